"""Interrupted runs resume to weights bitwise equal to an uninterrupted run (CPU, deterministic)."""

import json
import signal
import subprocess
import time

import pytest
from safetensors.torch import load_file

from tests.conftest import REPO, fmloop_cmd, overrides_to_args, run_cli, tiny_overrides

pytestmark = pytest.mark.slow
STEPS = 300


def _args(corpus, out):
    overrides = tiny_overrides(corpus, max_steps=STEPS, checkpoint_every=25, eval_every=100, log_every=5)
    # Tokenizer training is not bit-reproducible across processes (ties are broken by hash order),
    # so the runs being compared share one tokenizer; a resumed run always reuses its own.
    overrides["tokenizer"] = {"path": str(corpus.parent / "tokenizer")}
    return ["pretrain", "--out", str(out), *overrides_to_args(overrides)]


def _weights(run):
    return load_file(str(run / "model" / "model.safetensors"))


def _wait_for(predicate, proc, timeout=900):
    """Wait for the event; the bound is only a guard against a hung run, not an expected time."""
    start = time.monotonic()
    while not predicate():
        assert proc.poll() is None, "the run ended before it could be interrupted"
        assert time.monotonic() - start < timeout, "timed out waiting for the run to make progress"
        time.sleep(0.05)


def _last_step(run):
    path = run / "metrics.jsonl"
    if not path.exists():
        return 0
    steps = [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip().endswith("}")]
    return max(steps, default=0)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    from fmloop.data.tokenizer import train_tokenizer
    from tests.conftest import make_corpus

    base = tmp_path_factory.mktemp("resume")
    corpus = base / "corpus.txt"
    corpus.write_text("\n".join(make_corpus(400)) + "\n")
    train_tokenizer(make_corpus(400), "wordpiece", 200, 1).save_pretrained(base / "tokenizer")
    result = run_cli(*_args(corpus, base / "straight"))
    assert result.returncode == 0, result.stderr[-3000:]
    return corpus, _weights(base / "straight")


def _assert_bitwise_equal(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype
        assert (a[key] == b[key]).all(), f"{key} differs after resume"


def test_sigterm_checkpoints_exits_143_and_resumes_exactly(reference, tmp_path):
    corpus, expected = reference
    run = tmp_path / "run"
    log = tmp_path / "stderr.log"
    with open(log, "w") as err:
        proc = subprocess.Popen(fmloop_cmd(*_args(corpus, run)), cwd=REPO, stdout=subprocess.DEVNULL, stderr=err)
        _wait_for(lambda: _last_step(run) >= 30, proc)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=900)
    assert proc.returncode == 143, log.read_text()[-2000:]  # 128 + SIGTERM, as docs/cli.md says
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "stopped" and "SIGTERM" in manifest["stop_reason"]
    stopped_at = manifest["metrics"]["steps"]
    assert 30 <= stopped_at < STEPS
    assert (run / "checkpoints" / f"step-{stopped_at:08d}").is_dir()

    result = run_cli("pretrain", "--resume", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "manifest.json").read_text())["status"] == "finished"
    _assert_bitwise_equal(_weights(run), expected)
    steps = [json.loads(l)["step"] for l in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in l]
    assert steps == sorted(set(steps))  # no duplicated log lines after the resume


def test_kill_9_then_resume_matches_uninterrupted_run(reference, tmp_path):
    corpus, expected = reference
    run = tmp_path / "run"
    proc = subprocess.Popen(
        fmloop_cmd(*_args(corpus, run)), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    _wait_for(lambda: _last_step(run) >= 60, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert not (run / "model").exists()  # killed before the end: no model a later step could mistake for final

    result = run_cli("pretrain", "--resume", str(run))
    assert result.returncode == 0, result.stderr[-3000:]
    _assert_bitwise_equal(_weights(run), expected)
