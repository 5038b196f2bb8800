"""torchrun with 2 CPU processes (gloo) trains the same model as 1 process at the same global batch."""

import json
import os
import subprocess
import sys

import pytest
from safetensors.torch import load_file

from fmloop.data.tokenizer import train_tokenizer
from tests.conftest import REPO, make_corpus, overrides_to_args, run_cli, tiny_overrides

pytestmark = pytest.mark.slow


def _args(corpus, tokenizer, out):
    overrides = tiny_overrides(
        corpus, max_steps=8, batch_size=8, eval_every=4, checkpoint_every=4, lr=1e-3, threads=1, device="cpu"
    )  # gloo on CPU, also on a machine with one GPU
    overrides["model"]["dropout"] = 0.0  # dropout streams differ per process by design
    overrides["tokenizer"] = {"path": str(tokenizer)}
    return ["pretrain", "--out", str(out), *overrides_to_args(overrides)]


def test_two_process_ddp_matches_one_process(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(make_corpus(400)) + "\n")
    train_tokenizer(make_corpus(400), "wordpiece", 200, 1).save_pretrained(tmp_path / "tok")

    single = run_cli(*_args(corpus, tmp_path / "tok", tmp_path / "one"))
    assert single.returncode == 0, single.stderr[-3000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    ddp = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29531",
            "-m",
            "fmloop",
            *_args(corpus, tmp_path / "tok", tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        cwd=REPO,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert "world_size=2" in manifest["runtime"] and manifest["status"] == "finished"
    log = lambda run: [json.loads(l) for l in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    one, two = log("one"), log("two")
    assert [r["step"] for r in one] == [r["step"] for r in two]  # rank 0 alone wrote the log, once per step
    for a, b in zip(one, two):
        for key in ("loss", "eval_loss"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4), (a["step"], key)
        if "tokens_seen" in a:
            assert a["tokens_seen"] == b["tokens_seen"]  # the same examples were consumed
    w1, w2 = (load_file(str(tmp_path / run / "model" / "model.safetensors")) for run in ("one", "two"))
    for key in w1:
        assert (w1[key] - w2[key]).abs().max() < 1e-4, key


def test_two_process_finetune_matches_one_process(tiny_base, sentiment_dir, tmp_path):
    """Fine-tuning (full strategy, a classification head) under torchrun: the same steps, losses and
    weights as one process at the same global batch."""

    def args(out):
        overrides = {
            "model": {"name": str(tiny_base), "dropout": 0.0},
            "data": {"path": str(sentiment_dir)},
            "strategy": "full",
            "train": {"lr": 3e-3, "max_steps": 8, "batch_size": 8, "checkpoint_every": 4,
                      "tensorboard": False, "seed": 0, "threads": 1, "log_every": 1, "device": "cpu"},
        }  # fmt: skip
        return ["finetune", "--out", str(out), *overrides_to_args(overrides)]

    single = run_cli(*args(tmp_path / "one"))
    assert single.returncode == 0, single.stderr[-3000:]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    ddp = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
         "-m", "fmloop", *args(tmp_path / "two")],
        capture_output=True, text=True, timeout=600, env=env, cwd=REPO,
    )  # fmt: skip
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert "world_size=2" in manifest["runtime"] and manifest["status"] == "finished"
    log = lambda run: [json.loads(l) for l in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
    one, two = log("one"), log("two")
    assert [r["step"] for r in one] == [r["step"] for r in two]
    for a, b in zip(one, two):
        for key in ("loss", "eval_loss", "eval_accuracy"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-4, abs=1e-6), (a["step"], key)
    w1, w2 = (load_file(str(tmp_path / run / "model" / "model.safetensors")) for run in ("one", "two"))
    assert w1.keys() == w2.keys()
    for key in w1:
        assert (w1[key] - w2[key]).abs().max() < 1e-4, key
