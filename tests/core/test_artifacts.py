import json

import pytest

from fmloop.core.artifacts import RunDir, atomic_open, atomic_write_json, read_jsonl
from fmloop.core.errors import FmloopError


def test_atomic_write_keeps_old_content_when_writer_fails(tmp_path):
    target = tmp_path / "m.json"
    atomic_write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_open(target, "w") as fh:
            fh.write('{"v": 2, "half')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_manifest_fields_and_version(tmp_path):
    run = RunDir(tmp_path / "run").create()
    run.write_manifest(kind="pretrain", parent=None, config_hash="abc", data_fingerprint="f00")
    run.write_manifest(metrics={"eval_loss": 1.5})
    manifest = run.read_manifest()
    assert manifest["kind"] == "pretrain" and manifest["metrics"]["eval_loss"] == 1.5
    assert manifest["fmloop_version"] and manifest["config_hash"] == "abc"


def test_existing_run_dir_is_not_overwritten(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("x")
    with pytest.raises(FmloopError, match="already exists"):
        RunDir(tmp_path / "run").create()
    assert (tmp_path / "run" / "keep.txt").read_text() == "x"


def test_torn_last_jsonl_line_is_ignored(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"st')
    assert read_jsonl(path) == [{"step": 1}, {"step": 2}]
