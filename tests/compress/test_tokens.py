"""A token model exported to ONNX and quantized to int8 (ONNX Runtime and torch): each checked
against its parent on entity F1, each answering the same entities through fmloop.load."""

import json

import pytest

from fmloop.compress import onnx_export, quantize
from fmloop.compress.config import ExportConfig, QuantizeConfig
from fmloop.compress.parity import require_parity
from fmloop.core.errors import ParityError
from fmloop.models.loading import load

TEXTS = ["we saw tom smith in rome today", "anna was in new york"]


def entities(model) -> list:
    return [[(e["label"], e["start"], e["end"]) for e in p["entities"]] for p in model.predict(TEXTS)]


def test_onnx_export_is_checked_on_entity_f1_and_answers_the_same(token_run, tagged_dir, tmp_path):
    run = onnx_export.run(ExportConfig(model=str(token_run), data=str(tagged_dir)), tmp_path / "onnx")
    parity = json.loads((run.model_dir / "parity.json").read_text())
    assert parity["entity_f1"] == pytest.approx(parity["parent_entity_f1"], abs=1e-6)
    assert parity["word_agreement"] == 1.0 and parity["max_abs_diff"] < 1e-3
    exported = load(run.model_dir)
    assert type(exported).__name__ == "OnnxModel" and exported.task == "tokens"
    assert entities(exported) == entities(load(token_run, device="cpu"))


@pytest.mark.parametrize("backend", ["onnx", "torch"])
def test_int8_keeps_the_entities(token_run, tagged_dir, tmp_path, backend):
    run = quantize.run(QuantizeConfig(model=str(token_run), data=str(tagged_dir), backend=backend), tmp_path / "q")
    parity = json.loads((run.model_dir / "parity.json").read_text())
    assert parity["parent_entity_f1"] - parity["entity_f1"] <= 0.03  # the default --min-agreement 0.97
    assert load(run.model_dir).task == "tokens"


def test_an_entity_f1_loss_beyond_the_threshold_is_refused():
    parity = {"n": 40, "agreement": 0.9, "max_abs_diff": 1.0, "word_agreement": 0.98,
              "parent_entity_f1": 0.90, "entity_f1": 0.85}  # fmt: skip
    with pytest.raises(ParityError, match="loses 0.0500 entity F1"):
        require_parity(parity, 0.97, None, "the int8 model")
    require_parity(parity, 0.94, None, "the int8 model")  # within 0.06: kept
