"""A pipeline file is checked before anything runs: unknown stages, references to stages or outputs
that do not exist, cycles and bad config values are errors naming the file and line."""

import pytest
import yaml

from fmloop.core.errors import ConfigError
from fmloop.pipeline import spec

TWO_STAGES = """\
name: demo
stages:
  finetune:
    config:
      data: {path: DATA}
      model: {name: bert-mini, tokenizer: TOKENIZER}
  evaluate:
    config:
      model: ${finetune.model}
      data: ${vars.data}
vars:
  data: DATA
"""


def _write(tmp_path, text: str):
    path = tmp_path / "pipeline.yaml"
    path.write_text(text)
    return path


def _error(tmp_path, text: str, sets=()) -> str:
    with pytest.raises(ConfigError) as err:
        spec.load(_write(tmp_path, text), list(sets))
    return str(err.value)


def test_references_resolve_to_the_upstream_folder_and_order_the_stages(tmp_path):
    text = TWO_STAGES.replace("DATA", str(tmp_path)).replace("TOKENIZER", str(tmp_path))
    # evaluate is written first: the reference, not the file order, decides
    reordered = yaml.safe_load(text)
    reordered["stages"] = dict(reversed(list(reordered["stages"].items())))
    pipeline = spec.load(_write(tmp_path, yaml.safe_dump(reordered, sort_keys=False)), out=tmp_path / "out")
    assert list(pipeline.stages) == ["finetune", "evaluate"]
    evaluate = pipeline.stages["evaluate"]
    assert evaluate.config.model == str(tmp_path / "out" / "finetune") and evaluate.needs == ["finetune"]
    assert evaluate.config.data == str(tmp_path)


def test_a_reference_to_a_missing_stage_names_the_line_and_the_stages(tmp_path):
    message = _error(tmp_path, TWO_STAGES.replace("${finetune.model}", "${finetuned.model}"))
    assert "pipeline.yaml:9" in message and "no stage 'finetuned'" in message and "finetune, evaluate" in message


def test_a_reference_to_a_missing_output_lists_the_outputs(tmp_path):
    message = _error(tmp_path, TWO_STAGES.replace("${finetune.model}", "${finetune.tokenizer}"))
    assert "pipeline.yaml:9" in message and "has no output 'tokenizer'" in message and "model" in message


def test_a_cycle_is_refused_with_its_path(tmp_path):
    text = TWO_STAGES.replace("data: {path: DATA}", "data: {path: '${evaluate.metrics}'}")
    message = _error(tmp_path, text)
    assert "cycle" in message and "finetune -> evaluate -> finetune" in message
    assert "pipeline.yaml:" in message


def test_an_unknown_kind_lists_the_valid_ones(tmp_path):
    message = _error(tmp_path, TWO_STAGES.replace("  evaluate:\n", "  evaluate:\n    uses: evaluation\n"))
    assert "pipeline.yaml:8" in message and "unknown stage kind 'evaluation'" in message and "evaluate" in message


def test_a_type_error_names_the_line_of_the_parameter(tmp_path):
    text = TWO_STAGES.replace("model: {name: bert-mini", "train: {lr: -1}\n      model: {name: bert-mini")
    message = _error(tmp_path, text)
    assert "pipeline.yaml:6" in message and "'train.lr' parameter of finetune must be > 0" in message


def test_set_changes_a_stage_or_a_variable_and_rejects_anything_else(tmp_path):
    text = TWO_STAGES.replace("DATA", str(tmp_path)).replace("TOKENIZER", str(tmp_path))
    pipeline = spec.load(_write(tmp_path, text), ["finetune.train.lr=1e-4", "vars.data=/elsewhere"])
    assert pipeline.stages["finetune"].config.train.lr == 1e-4
    assert pipeline.stages["evaluate"].config.data == "/elsewhere"
    assert "neither `vars` nor a stage" in _error(tmp_path, text, ["finetun.train.lr=1"])
    assert "no variable 'missing'" in _error(tmp_path, text.replace("${vars.data}", "${vars.missing}"))
