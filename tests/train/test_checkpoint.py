"""Checkpoints survive a kill -9 at any moment of writing, and load exactly what was saved."""

import random
import signal
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch import nn

from fmloop.core.errors import ResumeError
from fmloop.core.runtime import setup_runtime
from fmloop.train.checkpoint import LATEST, TrainState, load_checkpoint, save_checkpoint
from fmloop.train.optim import build_optimizer, build_scheduler


def _parts(width=64):
    model = nn.Sequential(nn.Linear(width, width), nn.Linear(width, 4))
    model[1].weight = nn.Parameter(model[1].weight)  # plain params
    opt = build_optimizer(model, 1e-3, 0.01, (0.9, 0.99))
    return model, opt, build_scheduler(opt, 2, 100, "cosine")


def test_round_trip_restores_model_optimizer_scheduler_rng(tmp_path):
    runtime = setup_runtime(device="cpu", precision="fp32", threads=1, seed=0)
    model, opt, sched = _parts()
    model(torch.randn(3, 64)).sum().backward()
    opt.step(), sched.step()
    state = TrainState(step=1, epoch=0, batch_in_epoch=1, tokens_seen=10)
    save_checkpoint(tmp_path, model, opt, sched, state, runtime)
    expected_draw = torch.rand(3)

    model2, opt2, sched2 = _parts()
    torch.rand(100)  # disturb the RNG
    loaded = load_checkpoint(tmp_path, model2, opt2, sched2, runtime)
    assert loaded == state
    assert torch.equal(torch.rand(3), expected_draw)
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert sched2.last_epoch == 1 and opt2.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]


def test_damaged_latest_falls_back_to_previous(tmp_path):
    runtime = setup_runtime(device="cpu", precision="fp32", threads=1, seed=0)
    model, opt, sched = _parts()
    for step in (1, 2):
        save_checkpoint(tmp_path, model, opt, sched, TrainState(step=step), runtime, keep=3)
    (tmp_path / "step-00000002" / "model.safetensors").write_bytes(b"garbage")
    assert load_checkpoint(tmp_path, *_parts(), runtime).step == 1


def test_no_checkpoint_is_a_resume_error(tmp_path):
    runtime = setup_runtime(device="cpu", precision="fp32", threads=1, seed=0)
    with pytest.raises(ResumeError, match="no checkpoint"):
        load_checkpoint(tmp_path, *_parts(), runtime)


WRITER = textwrap.dedent("""
    import sys, torch
    from pathlib import Path
    from torch import nn
    from fmloop.core.runtime import setup_runtime
    from fmloop.train.checkpoint import TrainState, save_checkpoint, candidates
    from fmloop.train.optim import build_optimizer, build_scheduler
    root = Path(sys.argv[1])
    runtime = setup_runtime(device="cpu", precision="fp32", threads=1, seed=0)
    model = nn.Sequential(nn.Linear(512, 512), nn.Linear(512, 512))
    opt = build_optimizer(model, 1e-3, 0.0, (0.9, 0.99))
    sched = build_scheduler(opt, 0, 10**6, "constant")
    found = candidates(root)
    step = int(found[0].name.split("-")[1]) if found else 0
    print("ready", flush=True)
    while True:
        step += 1
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(step)  # weights encode the step they belong to
        save_checkpoint(root, model, opt, sched, TrainState(step=step), runtime, keep=2)
""")


def test_kill_9_at_many_points_while_writing_leaves_a_loadable_checkpoint(tmp_path):
    """Kill the writer at random moments, 15 times; after each, the checkpoint `latest` resolves
    to loads, and its weights belong to the step its state.json names (no mixing of two saves)."""
    rng = random.Random(0)
    runtime = setup_runtime(device="cpu", precision="fp32", threads=1, seed=0)
    root = tmp_path / "ckpt"
    last_step = 0
    for attempt in range(15):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if not any(root.glob("step-*")):
            continue
        model = nn.Sequential(nn.Linear(512, 512), nn.Linear(512, 512))
        opt = build_optimizer(model, 1e-3, 0.0, (0.9, 0.99))
        state = load_checkpoint(root, model, opt, build_scheduler(opt, 0, 10**6, "constant"), runtime)
        assert state.step >= last_step
        assert all(torch.all(p == state.step) for p in model.parameters()), f"attempt {attempt}: mixed weights"
        assert (root / LATEST).read_text().strip() == f"step-{state.step:08d}"
        last_step = state.step
    assert last_step > 5  # the writer made progress across kills
