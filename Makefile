# Two entry points: `make demo` (set up, then run the main job) and `make test`.
# Both create .venv when it is missing and install fmloop with torch pinned to the
# CPU build 2.13.0. TORCH is pip arguments, not one word, so a GPU machine can pick its build:
#   make demo TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
TORCH  ?= torch==2.13.0
STAMP  := $(VENV)/.installed

.PHONY: setup demo test cli-docs bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# torch first, from wherever TORCH says; fmloop's own install then finds it satisfied and keeps it.
$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[demo,test,postgres,tensorboard,bench]"
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(PY) -m fmloop demo

test: setup
	$(PY) -m pytest -q

cli-docs: setup
	$(PY) -m fmloop.cli.reference cli > docs/cli.md
	$(PY) -m fmloop.cli.reference config > docs/config.md

bench: setup
	$(PY) bench/pretrain_throughput.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
