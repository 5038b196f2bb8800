"""What `fmloop run` decides for each stage before running anything: cached when the key matches a
finished entry, resumed when it was stopped, rerun when anything it depends on changed, and what
--from, --only and --force ask for."""

import pytest

from fmloop.core.errors import ConfigError
from fmloop.pipeline import runner, spec
from tests.pipeline.test_spec import TWO_STAGES


@pytest.fixture
def pipeline_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(TWO_STAGES.replace("DATA", str(tmp_path)).replace("TOKENIZER", str(tmp_path)))
    return path


def _finish(pipeline, *names, status="finished"):
    lock = runner.read_lock(pipeline.out)
    for step in runner.plan(pipeline):
        if step.stage.name in names:
            step.stage.folder.mkdir(parents=True, exist_ok=True)
            lock["stages"][step.stage.name] = {"key": step.key, "status": status}
    runner.write_lock(pipeline.out, lock)


def _actions(pipeline, **options):
    return {s.stage.name: s.action for s in runner.plan(pipeline, **options)}


def test_cached_resumed_and_rerun(pipeline_file, tmp_path):
    pipeline = spec.load(pipeline_file, out=tmp_path / "out")
    assert _actions(pipeline) == {"finetune": "run", "evaluate": "run"}
    _finish(pipeline, "finetune", "evaluate")
    assert _actions(pipeline) == {"finetune": "cached", "evaluate": "cached"}
    _finish(pipeline, "evaluate", status="stopped")
    assert _actions(pipeline) == {"finetune": "cached", "evaluate": "resume"}
    changed = spec.load(pipeline_file, ["finetune.train.lr=1e-4"], out=tmp_path / "out")
    assert _actions(changed) == {"finetune": "run", "evaluate": "run"}  # downstream of a change reruns too
    (tmp_path / "touched").write_text("new input")  # an input folder's content changed: DATA is tmp_path
    assert _actions(pipeline)["finetune"] == "run"


def test_from_only_and_force(pipeline_file, tmp_path):
    pipeline = spec.load(pipeline_file, out=tmp_path / "out")
    with pytest.raises(ConfigError, match="has not finished"):
        runner.plan(pipeline, only="evaluate")  # its input was never made
    _finish(pipeline, "finetune", "evaluate")
    assert _actions(pipeline, start="finetune") == {"finetune": "run", "evaluate": "run"}
    assert _actions(pipeline, only="evaluate") == {"finetune": "skip", "evaluate": "run"}
    assert _actions(pipeline, force=True) == {"finetune": "run", "evaluate": "run"}
    with pytest.raises(ConfigError, match="no such stage"):
        runner.plan(pipeline, start="train")


def test_a_run_cut_by_its_time_budget_is_done_and_one_stopped_by_a_signal_is_not(tmp_path):
    from fmloop.core.artifacts import RunDir

    run = RunDir(tmp_path / "pretrain").create()
    run.write_manifest(kind="pretrain", status="stopped", stop_reason="time budget of 240s reached")
    assert runner._status(run) == "finished"  # its model is saved; the next stage may read it
    run.write_manifest(status="stopped", stop_reason="signal SIGTERM received")
    assert runner._status(run) == "stopped"
