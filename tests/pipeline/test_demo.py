"""The README's main command on a user's machine: no ../shared, no $FMLOOP_DATA, no network. The
demo must run every stage on the data shipped inside the package (budgets shrunk with --set)."""

import os
import subprocess
import sys

import pytest
import yaml

from fmloop.data.locate import EMBEDDED, find_dataset

SMALL = [
    "pretrain.train.max_steps=4", "pretrain.data.max_docs=100", "pretrain.train.seq_len=64",
    "finetune.train.limit_per_class=40", "finetune.train.epochs=1",
    "base.train.limit_per_class=40", "base.train.epochs=1",
    # The fine-tune stops on its time budget, so its model (and how well int8 agrees with it: 96.7 to
    # 99.5% seen) depends on the machine's speed; the agreement check has its own tests.
    "quantize.min_agreement=0.9",
    # A champion trained this little may answer one class only, so every true correction would carry
    # the other one and the retrain would refuse single-class feedback: half the corrections are
    # made wrong on purpose and the label check is off, since this test is about the stages running
    # on the shipped data, not about the gate (tests/feedback covers that).
    "users.requests=80", "users.audit_fraction=0.5", "users.wrong_rate=0.5",
    "retrain.min_corrections=4", "retrain.label_check=false", "retrain.train.max_steps=5",
]  # fmt: skip


def test_lookup_order_is_fmloop_data_then_shared_then_embedded(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FMLOOP_DATA", raising=False)
    assert find_dataset(["text/sst2"]).path == str(EMBEDDED / "text" / "sst2")
    shared = tmp_path.parent / "shared" / "datasets" / "text" / "sst2"
    (tmp_path / "data" / "text" / "sst2").mkdir(parents=True)
    monkeypatch.setenv("FMLOOP_DATA", str(tmp_path / "data"))
    assert find_dataset(["text/sst2"]).path == str(tmp_path / "data" / "text" / "sst2")
    assert not shared.exists()  # the shared folder is never looked for in the test's own tree


def test_embedded_data_is_complete_and_small():
    files = {p.relative_to(EMBEDDED).as_posix(): p.stat().st_size for p in EMBEDDED.rglob("*") if p.is_file()}
    assert {"README.md", "text/sst2/train.csv.gz", "text/sst2/validation.csv.gz", "text/sst2/test.csv.gz",
            "text/imdb/unsup/part-1.jsonl.gz", "text/imdb/unsup/part-2.jsonl.gz", "text/imdb/train.jsonl.gz", "text/imdb/test.jsonl.gz"} <= set(files)  # fmt: skip
    assert sum(files.values()) < 8 * 2**20


@pytest.mark.slow
def test_demo_runs_on_the_embedded_data_with_no_shared_folder(tmp_path):
    work = tmp_path / "clone"  # what `make demo` sees on a user's machine: nothing beside it
    work.mkdir()
    assert not (work.parent / "shared").exists()
    env = {k: v for k, v in os.environ.items() if k != "FMLOOP_DATA"}
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", FMLOOP_HOME=str(tmp_path / "home"))
    sets = [arg for s in SMALL for arg in ("--set", s)]
    result = subprocess.run(
        [sys.executable, "-m", "fmloop", "demo", "--out", "runs/demo", *sets],
        cwd=work, env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = work / "runs" / "demo"
    lock = yaml.safe_load((out / "pipeline.lock").read_text())["stages"]
    stages = ["clean", "pretrain", "finetune", "base", "evaluate", "quantize", "users", "retrain", "labellers", "judge"]
    assert [name for name in stages if lock.get(name, {}).get("status") == "finished"] == stages
    for stage, field in (("clean", "data"), ("pretrain", "data"), ("users", "data")):
        config = yaml.safe_load((out / stage / "config.yaml").read_text())
        path = config[field]["path"] if isinstance(config[field], dict) else config[field]
        assert path.startswith(str(EMBEDDED)), (stage, path)
    assert "the data shipped with fmloop" in result.stderr
    assert "TF-IDF + logistic regression on the same" in result.stderr  # printed beside the champion
    pretrained = out / "pretrain" / "model"
    assert (pretrained / "modules.json").exists()  # still a sentence encoder: read with mean pooling
    assert (out / "report.html").stat().st_size > 1000
