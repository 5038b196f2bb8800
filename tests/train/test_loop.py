"""The loop on tiny models: learning, gradient accumulation, non-finite steps."""

import numpy as np
import pytest
import torch
from torch import nn

from fmloop.core.errors import TrainingError
from fmloop.core.runtime import setup_runtime
from fmloop.train.checkpoint import candidates
from fmloop.train.loop import BatchPlan, Loop, LoopSettings
from fmloop.train.optim import build_optimizer, build_scheduler

rng = np.random.default_rng(0)
X = torch.tensor(rng.normal(size=(256, 8)), dtype=torch.float32)
Y = X @ torch.tensor(rng.normal(size=(8, 1)), dtype=torch.float32)


class Regression(nn.Module):
    """A toy objective with the real contract: {"loss_sum", "count"}."""

    def __init__(self, model, poison_steps=()):
        super().__init__()
        self.model, self.poison_steps, self.calls = model, set(poison_steps), 0

    def forward(self, batch):
        self.calls += 1
        pred = self.model(batch["x"])
        loss_sum = ((pred - batch["y"]) ** 2).sum()
        if self.calls in self.poison_steps:
            loss_sum = loss_sum * float("nan")
        return {"loss_sum": loss_sum, "count": len(batch["x"])}


def collate(indices, epoch):
    return {"x": X[indices], "y": Y[indices], "n_targets": len(indices), "n_tokens": len(indices)}


def make_loop(tmp_path=None, steps=30, accum=1, batch=16, poison=(), max_bad=3, seed=0):
    runtime = setup_runtime(device="cpu", precision="fp32", threads=1, seed=seed, deterministic=True)
    torch.manual_seed(0)
    model = nn.Linear(8, 1)
    objective = Regression(model, poison)
    opt = build_optimizer(model, 0.05, 0.0, (0.9, 0.99))
    sched = build_scheduler(opt, 0, steps, "constant")
    plan = BatchPlan(np.ones(len(X), dtype=np.int64), batch, collate, seed=1, bucket=False)
    evaluate = lambda: {"eval_loss": float(((model(X).detach() - Y) ** 2).mean()), "eval_ppl": 0.0}
    return Loop(
        objective=objective,
        model=model,
        train=plan,
        evaluate=evaluate,
        optimizer=opt,
        scheduler=sched,
        runtime=runtime,
        settings=LoopSettings(
            total_steps=steps, grad_accum=accum, eval_every=10, checkpoint_every=5, max_bad_steps=max_bad
        ),
        checkpoint_dir=tmp_path,
        callbacks=[],
    )


def test_loss_goes_down_and_epochs_advance():
    loop = make_loop(steps=60)
    before = loop.evaluate_fn()["eval_loss"]
    state = loop.run()
    assert loop.evaluate_fn()["eval_loss"] < 0.1 * before
    assert state.step == 60 and state.epoch == 3  # 16 batches of 16 per epoch


def test_gradient_accumulation_matches_one_big_batch():
    a, b = make_loop(steps=5, accum=1), make_loop(steps=5, accum=4)
    a.run(), b.run()
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-5, atol=1e-6)


def test_non_finite_steps_are_skipped_and_never_reach_the_weights():
    loop = make_loop(steps=6, poison=(3,))
    loop.run()
    assert loop.state.skipped_steps == 1 and loop.state.step == 6
    assert all(torch.isfinite(p).all() for p in loop.model.parameters())


def test_too_many_bad_steps_in_a_row_abort_without_touching_checkpoints(tmp_path):
    loop = make_loop(tmp_path, steps=20, poison=range(11, 40), max_bad=3)
    with pytest.raises(TrainingError, match="3 steps in a row"):
        loop.run()
    assert [p.name for p in candidates(tmp_path)] == ["step-00000010", "step-00000005"]
    assert all(torch.isfinite(p).all() for p in loop.model.parameters())


def test_early_stopping_stops_after_patience_evaluations(tmp_path):
    from fmloop.train.callbacks import BestTracker, EarlyStopping

    loop = make_loop(tmp_path, steps=100)
    loop.evaluate_fn = lambda: {"eval_loss": 1.0, "eval_ppl": 2.7}  # never improves after the first
    loop.settings.eval_every = 5
    loop.callbacks += [BestTracker("eval_loss", "min"), EarlyStopping(patience=2)]
    state = loop.run()
    # evaluations at steps 0 (best), 5 (1 without improvement), 10 (2: stop)
    assert state.step == 10 and "early stopping" in state.stop_reason
    assert candidates(tmp_path)[0].name == "step-00000010"  # the stop was checkpointed


def test_time_budget_stops_and_checkpoints(tmp_path):
    from fmloop.train.callbacks import TimeBudget

    loop = make_loop(tmp_path, steps=1000)
    loop.callbacks.append(TimeBudget(0.0))
    state = loop.run()
    assert state.step == 1 and "time budget" in state.stop_reason
    assert candidates(tmp_path)[0].name == "step-00000001"


def test_best_weights_are_kept_and_restored(tmp_path):
    from fmloop.train.callbacks import BestTracker

    loop = make_loop(steps=40)
    scores = iter([0.1, 0.5, 0.9, 0.4, 0.3])  # evaluations at steps 0, 10, 20, 30, 40: best at 20
    loop.evaluate_fn = lambda: {"accuracy": next(scores)}
    tracker = BestTracker("accuracy", "max", path=tmp_path / "best.safetensors")
    loop.callbacks.append(tracker)
    snapshots = {}
    loop.callbacks.append(
        type(
            "Snap",
            (),
            {
                "on_train_start": lambda *a: None,
                "on_step_end": lambda *a: None,
                "on_train_end": lambda *a: None,
                "on_evaluate": lambda self, lp, m: snapshots.__setitem__(
                    lp.state.step, [p.detach().clone() for p in lp.model.parameters()]
                ),
            },
        )()
    )
    state = loop.run()
    assert state.best_step == 20 and state.best_metric == 0.9
    assert tracker.restore(loop.model)
    assert all(torch.equal(a, b) for a, b in zip(loop.model.parameters(), snapshots[20]))


def test_elapsed_time_includes_every_evaluation():
    import time

    loop = make_loop(steps=20)
    inner = loop.evaluate_fn

    def slow_evaluate():
        time.sleep(0.1)
        return inner()

    loop.evaluate_fn = slow_evaluate
    state = loop.run()
    # evaluations at steps 0, 10 and 20: all inside elapsed_s, so training time is never negative
    assert state.extra["eval_s"] >= 0.3
    assert state.elapsed_s >= state.extra["eval_s"]
