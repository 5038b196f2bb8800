"""The model registry on a real embedded MLflow store: versions with lineage, aliases, references
that load anywhere a folder does, and files that outlive the run dir."""

import json
import shutil

import numpy as np
import pytest

from fmloop.core.errors import ConfigError, RegistryError
from fmloop.models.loading import load
from fmloop.registry import models
from fmloop.registry.tracking import client
from tests.conftest import finetune_tiny, run_cli

TEXTS = ["my friend sees the river and it was great today", "the cat likes a long song and it was awful again"]


def test_a_version_outlives_its_run_dir_and_loads_by_reference(home, text_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(text_run, run)
    expected = load(run).logits(TEXTS)
    version = models.register(run, "sst2")
    assert version.version == 1 and version.tags["fmloop.kind"] == "finetune"
    assert json.loads(version.tags["fmloop.labels"]) == ["negative", "positive"]
    assert version.metrics["validation_accuracy"] > 0.5
    assert json.loads((run / "manifest.json").read_text())["registered"] == [{"name": "sst2", "version": 1}]
    shutil.rmtree(run)
    got = load("models:/sst2/1").logits(TEXTS)
    assert np.array_equal(got, expected)


def test_aliases_move_and_references_follow(home, text_run, tiny_base, sentiment_dir, tmp_path):
    models.register(text_run, "sst2")
    other = finetune_tiny(tiny_base, sentiment_dir, tmp_path / "other", max_steps=2, seed=1)
    models.register(other.path, "sst2")
    models.set_alias("sst2", "champion", 1)
    assert models.get("models:/sst2@champion").version == 1
    models.set_alias("sst2", "champion", 2)
    assert models.get("models:/sst2@champion").version == 2
    assert [v.aliases for v in models.versions("sst2")] == [("champion",), ("previous",)]  # a promotion
    models.set_alias("sst2", "canary", 1)  # any other alias is only moved
    assert models.list_models() == [
        {"name": "sst2", "versions": 2, "latest": 2, "aliases": {"champion": 2, "previous": 1, "canary": 1}}
    ]
    folder = models.local_folder("models:/sst2@champion")
    assert np.array_equal(load(folder).logits(TEXTS), load(other.path).logits(TEXTS))


def test_lineage_names_the_registered_parent(home, text_run, sentiment_dir, tmp_path):
    models.register(text_run, "sst2")
    child = finetune_tiny(text_run, sentiment_dir, tmp_path / "child", max_steps=1)  # continues text_run
    version = models.register(child.path, "sst2")
    assert version.tags["fmloop.parent_versions"] == "sst2/1"


def test_bad_references_and_runs_are_one_line_errors(home, text_run, tmp_path):
    with pytest.raises(RegistryError, match="No registered model is named 'nope'"):
        models.versions("nope")
    models.register(text_run, "sst2")
    with pytest.raises(RegistryError, match="has no alias 'champion'"):
        models.get("models:/sst2@champion")
    with pytest.raises(RegistryError, match="has no version 7"):
        models.get("models:/sst2/7")
    with pytest.raises(ConfigError, match="not a registry reference"):  # a malformed reference: usage
        models.get("models:/sst2")
    with pytest.raises(ConfigError, match="not valid"):
        models.register(text_run, "bad name!")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RegistryError, match="not an fmloop run dir"):
        models.register(tmp_path / "plain", "sst2")


def test_a_tampered_store_is_refused(home, text_run):
    version = models.register(text_run, "sst2")
    stored = version.source.removeprefix("file://")
    weights = next(p for p in __import__("pathlib").Path(stored).rglob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(RegistryError, match="do not match its registered fingerprint"):
        models.local_folder("models:/sst2/1")


def test_cli_register_alias_list_and_predict_by_reference(home, text_run, tmp_path):
    result = run_cli("register", str(text_run), "--name", "sst2", "--alias", "champion")
    assert result.returncode == 0, result.stderr
    assert "models:/sst2/1 as @champion" in result.stderr
    result = run_cli("models", "list", "--json")
    assert json.loads(result.stdout)[0]["aliases"] == {"champion": 1}
    (tmp_path / "in.txt").write_text("\n".join(TEXTS) + "\n")
    result = run_cli("predict", "models:/sst2@champion", str(tmp_path / "in.txt"), "--out", str(tmp_path / "p.jsonl"))
    assert result.returncode == 0, result.stderr
    preds = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [p["label"] for p in preds] == [p["label"] for p in load(text_run).predict(TEXTS)]
    result = run_cli("alias", "sst2", "champion", "5")
    assert result.returncode == 9 and "has no version 5" in result.stderr
    assert client().get_registered_model("sst2").aliases == {"champion": 1}  # unchanged


def test_promote_keeps_the_old_champion_as_previous_and_rollback_restores_it(
    home, text_run, tiny_base, sentiment_dir, tmp_path
):
    models.register(text_run, "sst2")
    other = finetune_tiny(tiny_base, sentiment_dir, tmp_path / "other", max_steps=2, seed=1)
    models.register(other.path, "sst2")
    models.promote("sst2", 1)
    with pytest.raises(RegistryError, match="no 'previous'"):
        models.rollback("sst2")
    models.promote("sst2", 2)
    assert client().get_registered_model("sst2").aliases == {"champion": 2, "previous": 1}
    result = run_cli("rollback", "sst2")
    assert result.returncode == 0, result.stderr
    assert client().get_registered_model("sst2").aliases == {"champion": 1, "previous": 2}


def test_every_way_of_moving_champion_keeps_previous_so_rollback_works(home, text_run, tmp_path):
    first = run_cli("register", str(text_run), "--name", "sst2", "--alias", "champion")
    assert first.returncode == 0, first.stderr
    copy = tmp_path / "again"
    shutil.copytree(text_run, copy)
    second = run_cli("register", str(copy), "--name", "sst2", "--alias", "champion")
    assert second.returncode == 0, second.stderr
    assert client().get_registered_model("sst2").aliases == {"champion": 2, "previous": 1}
    moved = run_cli("alias", "sst2", "champion", "1")
    assert moved.returncode == 0, moved.stderr
    assert client().get_registered_model("sst2").aliases == {"champion": 1, "previous": 2}
    back = run_cli("rollback", "sst2")
    assert back.returncode == 0, back.stderr
    assert client().get_registered_model("sst2").aliases == {"champion": 2, "previous": 1}
