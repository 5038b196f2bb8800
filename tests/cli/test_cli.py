"""The command line: help, info, and one clear line (no traceback) for each user mistake."""

import json

import pytest

from tests.conftest import overrides_to_args, run_cli, tiny_overrides


def _assert_user_error(result, code, *fragments):
    assert result.returncode == code, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr.replace("\n", " "), result.stderr


def test_help_lists_stages():
    result = run_cli("--help")
    assert result.returncode == 0
    for word in ("pretrain", "info", "demo"):
        assert word in result.stdout
    help_text = run_cli("pretrain", "--help").stdout
    for option in ("--data", "--objective", "--model", "--out", "--config", "--max-steps", "--max-time", "--resume"):
        assert option in help_text


def test_missing_data_file(tmp_path):
    result = run_cli("pretrain", "--data", str(tmp_path / "nope.txt"), "--out", str(tmp_path / "run"))
    _assert_user_error(result, 3, "nope.txt does not exist")


def test_wrong_column_lists_columns(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text("review,stars\ngood film,5\nbad film,1\n")
    result = run_cli("pretrain", "--data", str(path), "--column", "body", "--out", str(tmp_path / "run"))
    _assert_user_error(result, 3, "no column 'body'", "review, stars")


def test_unknown_preset_lists_valid_ones(corpus_file, tmp_path):
    result = run_cli(
        "pretrain",
        "--data",
        str(corpus_file),
        "--model",
        "bert-huge",
        "--out",
        str(tmp_path / "run"),
        "--max-steps",
        "1",
    )
    _assert_user_error(result, 4, "Unknown model preset 'bert-huge'", "bert-mini", "gpt2-nano")


def test_bad_config_value_names_field(corpus_file, tmp_path):
    result = run_cli("pretrain", "--data", str(corpus_file), "--out", str(tmp_path / "run"), "--train.lr=-1")
    _assert_user_error(result, 2, "The 'train.lr' parameter of pretrain must be > 0. Got -1 instead.")
    assert not (tmp_path / "run").exists()


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "bad.txt"
    path.write_bytes(b"fine\nalso fine\n\xff\xfe broken\n")
    result = run_cli("pretrain", "--data", str(path), "--out", str(tmp_path / "run"))
    _assert_user_error(result, 3, "bad.txt, line 3", "UTF-8")


def test_corrupt_resume_dir_is_refused_and_left_alone(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("objective: mlm\n")
    (run / "manifest.json").write_text("{not json")
    result = run_cli("pretrain", "--resume", str(run))
    _assert_user_error(result, 5, "cannot be resumed", "manifest.json is corrupt")
    assert (run / "manifest.json").read_text() == "{not json"
    result = run_cli("pretrain", "--resume", str(tmp_path / "elsewhere"))
    _assert_user_error(result, 5, "cannot be resumed")


@pytest.mark.slow
def test_pretrain_then_info(corpus_file, tmp_path):
    run = tmp_path / "run"
    result = run_cli("pretrain", "--out", str(run), *overrides_to_args(tiny_overrides(corpus_file, max_steps=8)))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "finished after 8 steps" in result.stderr
    assert "pretrain mlm: step 8/8" in result.stderr  # plain progress lines when stderr is not a terminal
    info = run_cli("info", str(run))
    assert info.returncode == 0 and "pretrain" in info.stdout and "held-out evaluations" in info.stdout
    manifest = json.loads(run_cli("info", str(run), "--json").stdout)
    assert manifest["kind"] == "pretrain" and manifest["metrics"]["steps"] == 8
    assert {"config_hash", "data_fingerprint", "fmloop_version", "parents"} <= manifest.keys()
    again = run_cli("pretrain", "--out", str(run), "--data", str(corpus_file))
    _assert_user_error(again, 2, "already exists")  # a usage mistake, not a bug (exit 1)


def test_the_preset_names_in_help_texts_are_the_catalogs():
    from fmloop.cli.common import IMAGE_PRESETS, TEXT_PRESETS
    from fmloop.models.presets import PRESETS
    from fmloop.models.vision import VISION_PRESETS

    assert sorted(TEXT_PRESETS) == sorted(PRESETS.names())
    assert sorted(IMAGE_PRESETS) == sorted(VISION_PRESETS.names())
