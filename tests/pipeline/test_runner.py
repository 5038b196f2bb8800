"""`fmloop run`: stages run in order and are skipped when nothing changed; SIGTERM in the first of
two stages stops the pipeline (the second never starts) and the same command resumes the first
from its checkpoint."""

import json
import signal
import subprocess
import time

import pytest
import yaml

from fmloop.pipeline.runner import read_lock
from tests.conftest import REPO, fmloop_cmd, run_cli, tiny_overrides

pytestmark = pytest.mark.slow


def _pipeline(tmp_path, corpus_file, sentiment_dir, steps: int) -> tuple:
    pretrain = tiny_overrides(corpus_file, max_steps=steps, checkpoint_every=25, eval_every=25, log_every=25)
    stages = {
        "pretrain": {"config": pretrain},
        "finetune": {
            "config": {
                "data": {"path": str(sentiment_dir)},
                "model": {"name": "${pretrain.model}"},
                "train": {"epochs": 1, "lr": 3e-3, "threads": 1, "precision": "fp32", "tensorboard": False},
            }
        },
    }
    path = tmp_path / "two.yaml"
    path.write_text(yaml.safe_dump({"name": "two", "stages": stages}, sort_keys=False))
    return path, tmp_path / "out"


def test_a_second_run_skips_what_is_cached_and_a_change_reruns_downstream(home, tmp_path, corpus_file, sentiment_dir):
    path, out = _pipeline(tmp_path, corpus_file, sentiment_dir, steps=8)
    first = run_cli("run", str(path), "--out", str(out))
    assert first.returncode == 0, first.stderr[-3000:]
    lock = read_lock(out)["stages"]
    assert [lock[s]["status"] for s in ("pretrain", "finetune")] == ["finished", "finished"]
    assert (out / "report.html").exists() and "finetune" in (out / "report.html").read_text()

    again = run_cli("run", str(path), "--out", str(out))
    assert again.returncode == 0 and again.stderr.count("cached") == 2, again.stderr[-3000:]
    assert read_lock(out)["stages"]["finetune"]["key"] == lock["finetune"]["key"]

    changed = run_cli("run", str(path), "--out", str(out), "--set", "finetune.train.lr=1e-3")
    assert changed.returncode == 0, changed.stderr[-3000:]
    assert "pretrain (pretrain): cached" in changed.stderr and "finetune (finetune): run" in changed.stderr
    assert read_lock(out)["stages"]["finetune"]["key"] != lock["finetune"]["key"]


def test_sigterm_in_the_first_stage_stops_the_pipeline_and_a_rerun_resumes_it(
    home, tmp_path, corpus_file, sentiment_dir
):
    path, out = _pipeline(tmp_path, corpus_file, sentiment_dir, steps=1500)
    checkpoints = out / "pretrain" / "checkpoints"
    with open(tmp_path / "stderr.log", "w") as err:
        proc = subprocess.Popen(fmloop_cmd("run", str(path), "--out", str(out)), cwd=REPO, stderr=err)
        deadline = time.monotonic() + 300
        while not (checkpoints.is_dir() and any(checkpoints.glob("step-*"))):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "stderr.log").read_text()[-3000:]
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=300)
    log = (tmp_path / "stderr.log").read_text()
    assert proc.returncode == 143, log[-3000:]  # 128 + SIGTERM (docs/cli.md, exit codes)
    assert "pipeline stopped in stage 'pretrain'" in log and f"fmloop run {path}" in log
    assert not (out / "finetune").exists()  # the second stage never started
    lock = read_lock(out)["stages"]
    assert lock["pretrain"]["status"] == "stopped" and "finetune" not in lock
    stopped_at = json.loads((out / "pretrain" / "manifest.json").read_text())["metrics"]["steps"]
    assert 0 < stopped_at < 1500

    first_rows = (out / "pretrain" / "metrics.jsonl").read_text().splitlines()[:2]
    resumed = run_cli("run", str(path), "--out", str(out))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "pretrain (pretrain): resume" in resumed.stderr and "continuing from its checkpoint step-" in resumed.stderr
    assert (out / "pretrain" / "metrics.jsonl").read_text().splitlines()[:2] == first_rows  # not started afresh
    steps = [json.loads(line)["step"] for line in (out / "pretrain" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 1500  # continued from the checkpoint, not restarted
    assert [read_lock(out)["stages"][s]["status"] for s in ("pretrain", "finetune")] == ["finished", "finished"]
