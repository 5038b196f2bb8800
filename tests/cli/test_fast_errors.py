"""Argument and config errors are answered before torch, transformers or datasets are imported."""

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "datasets")
CHECK = """
import sys
from fmloop.cli.main import app
try:
    app({args!r})
except SystemExit as exit:
    print("exit", exit.code)
print("heavy", sorted(m for m in {heavy!r} if m in sys.modules))
"""


@pytest.mark.parametrize(
    "args",
    [
        ["finetune", "--model", "m", "--data", "d", "--out", "o", "--max-step", "5"],  # mistyped flag
        ["finetune", "--model", "m", "--data", "d", "--out", "o", "--train.lr=-1"],  # bad value
        ["finetune", "--model", "models/missing", "--data", "d", "--out", "o"],  # no such folder
        ["finetune", "--model", "m", "--data", "d"],  # no --out
        ["pretrain", "--data", "d", "--out", "o", "--train.nope=1"],  # unknown key
        ["distill", "--teacher", "t", "--student", "s", "--data", "d", "--out", "o", "--distill.alpha=2"],
        ["prune", "m", "--out", "o", "--sparsity", "1.5"],
        ["finetune", "--resume", "not-a-run"],
        ["quantize", "m", "--out", "o", "--backend", "torch", "--mode", "static"],
        ["export", "m", "--out", "o", "--min-agreement", "1.5"],
        ["ensemble", "a", "b", "--out", "o", "--method", "median"],
        ["evaluate", "m", "d", "--batch-size", "0"],
        ["serve", "m", "--host", "0.0.0.0"],  # beyond loopback without FMLOOP_API_TOKEN
        ["serve", "models:/bad name@champion"],
        ["register", "run", "--name", "bad name!"],
    ],
)
def test_argument_errors_come_before_heavy_imports(args, tmp_path):
    code = CHECK.format(args=args, heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    lines = result.stdout.strip().splitlines()
    assert lines[0].startswith("exit ") and lines[0] != "exit 0", result.stdout + result.stderr
    assert lines[-1] == "heavy []", (args, result.stdout, result.stderr[-2000:])
    assert "error" in result.stderr.lower()


def test_existing_out_is_refused_before_heavy_imports(tmp_path):
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "file").write_text("x")
    code = CHECK.format(args=["finetune", "--model", "m", "--data", "d", "--out", "o"], heavy=HEAVY)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert result.stdout.strip().splitlines()[-1] == "heavy []"
    assert "--overwrite" in result.stderr
