"""Fine-tuning resumes after kill -9 to the same weights as an uninterrupted run."""

import json
import signal
import subprocess

import pytest
from safetensors.torch import load_file

from tests.conftest import REPO, fmloop_cmd, run_cli
from tests.train.test_resume import _assert_bitwise_equal, _wait_for

pytestmark = pytest.mark.slow


def _args(base, data, out):
    return [
        "finetune",
        "--model",
        str(base),
        "--data",
        str(data),
        "--out",
        str(out),
        "--max-steps",
        "80",
        "--train.lr=3e-3",
        "--train.batch_size=8",
        "--train.evals_per_epoch=4",
        "--train.tensorboard=false",
        "--train.threads=1",
        "--train.seed=0",
        "--train.early_stopping_patience=100",
        "--train.log_every=1",
        "--train.checkpoint_every=10",
    ]


def _steps(run):
    path = run / "metrics.jsonl"
    if not path.exists():
        return 0
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip().endswith("}")]
    return max((r["step"] for r in rows), default=0)


def test_kill_9_then_resume_matches_uninterrupted_finetune(tiny_base, sentiment_dir, tmp_path):
    straight = tmp_path / "straight"
    result = run_cli(*_args(tiny_base, sentiment_dir, straight))
    assert result.returncode == 0, result.stderr[-3000:]

    run = tmp_path / "run"
    proc = subprocess.Popen(
        fmloop_cmd(*_args(tiny_base, sentiment_dir, run)),
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait_for(lambda: _steps(run) >= 35, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (run / "model").exists()
    assert any((run / "checkpoints").glob("step-*"))

    result = run_cli("finetune", "--resume", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
    _assert_bitwise_equal(
        load_file(str(run / "model" / "model.safetensors")), load_file(str(straight / "model" / "model.safetensors"))
    )


def test_resume_refuses_a_finished_run_and_a_non_run(tiny_base, sentiment_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    result = run_cli("finetune", "--resume", str(tmp_path / "empty"))
    assert result.returncode == 5 and "not an fmloop run dir" in result.stderr
