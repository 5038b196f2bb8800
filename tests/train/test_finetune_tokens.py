"""Token classification end to end on a tiny model: fine-tune (full and LoRA), evaluate with
seqeval's entity F1 and intervals, predict entities with character offsets, from the CLI too."""

import json

import pytest
import torch
import yaml
from transformers import AutoModel

from fmloop.core.config import load_config
from fmloop.core.errors import ConfigError
from fmloop.models.loading import load
from fmloop.train.config import FinetuneConfig
from fmloop.train.finetune import run as finetune
from tests.conftest import finetune_tokens, run_cli


def test_fine_tuning_learns_the_entities_and_reports_them(token_run):
    manifest = json.loads((token_run / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["metrics"]["test_entity_f1"] >= 0.9
    result = json.loads((token_run / "metrics.json").read_text())
    assert result["task"] == "tokens" and set(result["metrics"]["per_class"]) == {"LOC", "PER"}
    low, high = result["intervals_95"]["entity_f1"]
    assert low <= result["metrics"]["entity_f1"] <= high
    config = yaml.safe_load((token_run / "config.yaml").read_text())
    assert config["train"]["head_lr_scale"] == 30  # a new tag head learns at 30x the body's rate


def test_a_continued_tagger_keeps_its_head_at_the_body_rate(token_run, tagged_dir, tmp_path):
    run = finetune_tokens(token_run, tagged_dir, tmp_path / "more", max_steps=2)
    config = yaml.safe_load((run.path / "config.yaml").read_text())
    assert json.loads((run.path / "manifest.json").read_text())["continued"] == "head kept"
    assert config["train"]["head_lr_scale"] == 1


def test_predict_gives_entities_with_character_offsets(token_run):
    model = load(token_run, device="cpu")
    assert model.task == "tokens"
    text = "we saw tom smith in rome today"
    (answer,) = model.predict([text])
    found = [(e["label"], e["text"], e["start"], e["end"]) for e in answer["entities"]]
    assert found == [("PER", "tom smith", 7, 16), ("LOC", "rome", 20, 24)]
    assert answer["words"][2] == "tom" and answer["tags"][2:4] == ["B-PER", "I-PER"]


def test_evaluate_and_predict_from_the_command_line(token_run, tagged_dir, tmp_path):
    out = tmp_path / "eval"
    done = run_cli("evaluate", str(token_run), str(tagged_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["metrics"]["entity_f1"] >= 0.9 and "entity_f1" in metrics["intervals_95"]
    texts = tmp_path / "texts.txt"
    texts.write_text("anna was in paris\nthe film was good\n")
    done = run_cli("predict", str(token_run), str(texts), "--out", str(tmp_path / "p.jsonl"))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in (tmp_path / "p.jsonl").read_text().splitlines()]
    assert [[e["text"] for e in r["entities"]] for r in rows] == [["anna", "paris"], []]


def test_lora_trains_a_tagger_that_reloads_with_the_same_answers(tiny_base, tagged_dir, tmp_path):
    run = finetune_tokens(tiny_base, tagged_dir, tmp_path / "lora", strategy="lora", lr=1e-2)
    assert (run.model_dir / "adapter_config.json").exists()
    model = load(run.path, device="cpu")
    words = [["anna", "was", "in", "paris"]]
    assert (
        model.task == "tokens"
        and model.predict(words)[0]["tags"] == load(run.path, device="cpu").predict(words)[0]["tags"]
    )
    assert json.loads((run.path / "manifest.json").read_text())["metrics"]["test_entity_f1"] > 0.5


@pytest.mark.parametrize(
    "strategy, frozen",
    [("llrd", None), ("freeze:1", "bert.encoder.layer.0."), ("linear-probe", "bert.encoder.layer.1.")],
)
def test_the_other_loop_strategies_train_a_tagger(tiny_base, tagged_dir, tmp_path, strategy, frozen):
    run = finetune_tokens(tiny_base, tagged_dir, tmp_path / "run", strategy=strategy, epochs=2)
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["status"] == "finished" and manifest["metrics"]["steps"] > 0
    model = load(run.path, device="cpu")
    assert model.task == "tokens" and len(model.predict(["anna was in paris"])[0]["tags"]) == 4
    if frozen:  # the frozen layers are the base's own
        base = dict(AutoModel.from_pretrained(tiny_base).named_parameters())
        tuned = dict(model.model.named_parameters())
        name = next(n for n in tuned if n.startswith(frozen))
        assert torch.equal(tuned[name], base[name.removeprefix("bert.")])


def test_tagged_data_needs_the_tokens_task_and_back(tiny_base, tagged_dir, sentiment_dir, tmp_path):
    with pytest.raises(ConfigError, match="pass --task tokens"):
        finetune(
            load_config(
                FinetuneConfig, overrides={"model": {"name": str(tiny_base)}, "data": {"path": str(tagged_dir)}}
            ),
            tmp_path / "a",
        )
    with pytest.raises(ConfigError, match="--task tokens reads tagged words"):
        finetune_tokens(tiny_base, sentiment_dir, tmp_path / "b")
    with pytest.raises(ConfigError, match="does not apply to token classification"):
        finetune_tokens(tiny_base, tagged_dir, tmp_path / "c", strategy="contrastive")
