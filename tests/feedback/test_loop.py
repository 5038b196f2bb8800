"""`fmloop loop`: nothing new means nothing done, passes never overlap, and a kill -9 at any point of
a retrain or a promotion leaves the aliases on complete, loadable versions while the next pass
finishes the job on the same snapshot, registering the challenger once."""

import pytest

from fmloop.feedback import loop
from fmloop.feedback.config import LoopConfig
from fmloop.models.loading import load
from fmloop.registry import models
from tests.conftest import run_cli
from tests.feedback.users import TRAIN, label_audit_queue, register_champion, send_feedback

pytestmark = pytest.mark.slow
# The order the points are reached in the pass that trains a challenger, and in the pass that
# promotes it once its audit labels are in (the first inside the promotion).
TRAINING_POINTS = ["retrain:data-written", "train:checkpoint-saved", "retrain:trained", "retrain:registered"]
PROMOTION_POINTS = ["promote:previous-moved", "retrain:promoted"]


@pytest.fixture
def champion(home, text_run, tmp_path):
    return register_champion(text_run, tmp_path)


def _retrain_options() -> list[str]:
    """TRAIN as command-line overrides (YAML values: None is null), in fp32 on any CPU. These tests
    are about crash safety, not the gate's statistics (test_retrain.py): the gate here lets through
    any challenger that is not worse on the audit labels, so the promotion's crash points are
    reached even where a CPU's numerics make the challenger learn the new rule less well."""
    return [f"--retrain.train.{k}={'null' if v is None else v}" for k, v in TRAIN.items()] + [
        "--retrain.train.precision=fp32",
        "--retrain.alpha=0.999",
        "--retrain.tolerance=1.0",
        "--retrain.slice_tolerance=1.0",
        "--retrain.robustness_rows=0",
    ]


def _kill_at(points: list[str], db: str) -> None:
    for point in points:
        killed = run_cli("loop", "sst2", "--db", db, "--no-drift", *_retrain_options(), env={"FMLOOP_CRASH_AT": point})
        assert killed.returncode == -9, f"{point}: {killed.stderr[-2000:]}"
        assert _aliases_load()["champion"] in (1, 2), point
        assert loop.read_state("sst2")["pending"] is not None, point  # the next pass knows what to continue


def _aliases_load() -> dict[str, int]:
    """The aliases, after loading the model each names (a half-written version would fail here)."""
    aliases = {a: v.version for v in models.versions("sst2") for a in v.aliases}
    for alias in aliases:
        assert load(models.local_folder(f"models:/sst2@{alias}")).labels == ["negative", "positive"]
    return aliases


def test_nothing_new_does_nothing_and_a_held_lock_skips_the_pass(champion, tmp_path):
    cfg = LoopConfig(name="sst2", database=f"sqlite:///{tmp_path / 'fb.db'}", drift=False)
    outcome = loop.tick(cfg)
    assert outcome["action"] == "nothing" and "0 new feedback rows" in outcome["reason"]
    with loop.locked("sst2") as held:
        assert held and loop.tick(cfg)["action"] == "busy"
    assert [h["action"] for h in loop.read_state("sst2")["history"]] == ["nothing"]  # the busy pass wrote nothing


def test_kill_9_anywhere_in_a_retrain_is_resumed_by_the_next_pass(champion, tmp_path):
    db = f"sqlite:///{tmp_path / 'fb.db'}"
    send_feedback(db, corrections=140, audit=60)
    _kill_at(TRAINING_POINTS, db)
    trained = run_cli("loop", "sst2", "--db", db, "--no-drift", *_retrain_options())
    assert trained.returncode == 0 and "resumed" in trained.stderr, trained.stderr[-2000:]
    state = loop.read_state("sst2")
    assert state["pending"] is None and state["tried_high_water"] == 200
    assert state["history"][-1]["decision"] == "pending"  # it waits for the labels it asked for
    assert label_audit_queue(db) > 0
    _kill_at(PROMOTION_POINTS, db)
    assert _aliases_load() == {"champion": 2, "previous": 1}  # the promotion itself had completed
    finished = run_cli("loop", "sst2", "--db", db, "--no-drift", *_retrain_options())
    assert finished.returncode == 0 and "resumed" in finished.stderr, finished.stderr[-2000:]
    state = loop.read_state("sst2")
    assert state["pending"] is None and state["history"][-1]["promoted"] is True
    assert models.get("models:/sst2/2").tags["fmloop.gate"] == "passed"
    assert [v.version for v in models.versions("sst2")] == [2, 1]  # registered once across all the kills
    again = run_cli("loop", "sst2", "--db", db, "--no-drift")
    assert again.returncode == 0 and "nothing" in again.stderr, again.stderr[-2000:]


def test_a_retrain_that_fails_exits_non_zero_and_keeps_the_high_water_mark(champion, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("the failure used here is asking for a GPU on a machine without one")
    db = f"sqlite:///{tmp_path / 'fb.db'}"
    send_feedback(db, corrections=140, audit=60)
    failed = run_cli("loop", "sst2", "--db", db, "--no-drift", "--retrain.train.device=cuda")
    assert failed.returncode == 2, failed.stderr[-2000:]  # the challenger's config error, not a silent 0
    assert "failed" in failed.stderr
    state = loop.read_state("sst2")
    assert state["tried_high_water"] == 0 and state["pending"] is None  # this feedback was not used up
    assert state["history"][-1]["action"] == "failed"
    assert loop.tick(LoopConfig(name="sst2", database=db, drift=False, retrain={"min_corrections": 10**6}))[
        "action"
    ] == (
        "skipped"
    )  # the next pass reads the same rows again (and here finds too few corrections: skipped, not failed)
    assert loop.read_state("sst2")["tried_high_water"] == 200
