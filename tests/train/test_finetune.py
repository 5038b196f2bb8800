"""Fine-tuning end to end on a tiny BERT and a learnable synthetic sentiment task."""

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification

from fmloop.core.config import load_config
from fmloop.core.errors import ModelError
from fmloop.models.loading import load
from fmloop.train.finetune import FinetuneConfig
from fmloop.train.finetune import run as finetune

TEXTS = ["my friend sees the river and it was great today", "the cat likes a long song and it was awful again"]


def _finetune(base, data, out, **overrides):
    tree = {
        "model": {"name": str(base)},
        "data": {"path": str(data)},
        "train": {
            "lr": 3e-3,
            "epochs": 8,
            "tensorboard": False,
            "seed": 0,
            "threads": 1,
            "log_every": 5,
            "early_stopping_patience": None,
        },
    }
    for key, value in overrides.items():
        tree[key] = {**tree.get(key, {}), **value} if isinstance(value, dict) else value
    return finetune(load_config(FinetuneConfig, overrides=tree), out)


def test_full_finetune_learns_and_stores_the_label_mapping(tiny_base, sentiment_dir, tmp_path):
    run = _finetune(tiny_base, sentiment_dir, tmp_path / "run")
    manifest = run.read_manifest()
    assert manifest["metrics"]["test_accuracy"] > 0.9
    floor = manifest["floor"]  # TF-IDF + logistic regression on the same 240 labels, on the same test rows
    assert floor["labels"] == 240 and manifest["metrics"]["floor_test_accuracy"] == floor["accuracy"]
    assert floor["difference"] == pytest.approx(manifest["metrics"]["test_accuracy"] - floor["accuracy"])
    config = json.loads((run.model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"} and config["label2id"]["positive"] == 1
    plain = AutoModelForSequenceClassification.from_pretrained(run.model_dir)  # loads without fmloop
    assert plain.config.problem_type == "single_label_classification"
    preds = load(run.path).predict(TEXTS)
    assert [p["label"] for p in preds] == ["positive", "negative"]
    assert abs(sum(preds[0]["probabilities"].values()) - 1) < 1e-5
    resolved = run.read_config()["train"]
    assert resolved["batch_size"] == 16 and resolved["max_length"] % 8 == 0  # defaults are recorded
    metrics = json.loads((run.path / "metrics.json").read_text())
    assert {"accuracy", "macro_f1", "micro_f1", "per_class", "confusion_matrix", "roc_auc", "ece"} <= metrics[
        "metrics"
    ].keys()
    assert (run.path / "report.html").read_text().count("data:image/png") >= 3


def test_lora_model_reloads_with_identical_predictions(tiny_base, sentiment_dir, tmp_path):
    run = _finetune(tiny_base, sentiment_dir, tmp_path / "run", strategy="lora", train={"lr": 5e-3, "epochs": 16})
    assert (run.model_dir / "adapter_config.json").exists()
    manifest = run.read_manifest()
    assert manifest["trainable_parameters"] < manifest["parameters"] / 2
    # the default rank follows the width (hidden 32 here: rank 4, alpha 8) and is recorded
    assert {k: run.read_config()["train"][k] for k in ("lora_r", "lora_alpha")} == {"lora_r": 4, "lora_alpha": 8}
    # predictions of the in-memory model right after training were written to metrics.json;
    # a fresh load must reproduce them exactly (the head and pooler are saved with the adapter)
    reloaded = load(run.model_dir)
    again = load(run.model_dir)
    texts = TEXTS * 3
    np.testing.assert_array_equal(reloaded.logits(texts), again.logits(texts))
    expected = json.loads((run.path / "metrics.json").read_text())["metrics"]["accuracy"]
    from fmloop.evaluate.evaluation import score

    _, _, _, y, logits, _ = score(str(run.model_dir), str(sentiment_dir))
    assert (logits.argmax(1) == y).mean() == expected
    # It learned (chance is 0.5). Not tighter: the tiny tokenizer behind tiny_base is retrained per
    # session and the tokenizers library breaks frequency ties differently from run to run, so the
    # vocabulary, and with it this 16-epoch LoRA run, varies (one run reached only 0.78).
    assert expected > 0.7


@pytest.mark.parametrize("dora", [False, True], ids=["lora", "dora"])
def test_lora_in_memory_and_reloaded_agree(tiny_base, sentiment_dir, tmp_path, dora):
    """The known failure: a head (or pooler) missing from the saved adapter is re-initialised at load.
    DoRA adds a trained magnitude per output channel, which must travel with the adapter too."""
    from fmloop.adapt.strategies import apply_strategy
    from fmloop.data.tokenizer import load_tokenizer
    from fmloop.models.classifier import build_task_model

    tok = load_tokenizer(tiny_base)
    torch.manual_seed(0)
    model = build_task_model(str(tiny_base), "classification", ["negative", "positive"], tok).model
    peft_model = apply_strategy(model, "lora", total_steps=1, lora_r=4, lora_alpha=8, dora=dora).model
    with torch.no_grad():  # stand-in for training: move every trainable tensor
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    peft_model.eval()
    enc = tok(TEXTS, padding=True, return_tensors="pt")
    before = peft_model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits.detach()
    peft_model.save_pretrained(tmp_path / "adapter")
    peft_model.base_model.model.config.save_pretrained(tmp_path / "adapter")
    tok.save_pretrained(tmp_path / "adapter")
    after = torch.from_numpy(load(tmp_path / "adapter").logits(TEXTS))
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_lora_adapter_without_its_base_is_a_clear_error(tiny_base, sentiment_dir, tmp_path):
    run = _finetune(tiny_base, sentiment_dir, tmp_path / "run", strategy="lora", train={"max_steps": 2})
    cfg = json.loads((run.model_dir / "adapter_config.json").read_text())
    cfg["base_model_name_or_path"] = str(tmp_path / "gone")
    (run.model_dir / "adapter_config.json").write_text(json.dumps(cfg))
    assert load(run.model_dir).labels == ["negative", "positive"]  # found through the run's lineage
    (run.path / "manifest.json").unlink()  # no lineage either
    with pytest.raises(ModelError, match="LoRA adapter whose base model is missing"):
        load(run.model_dir)


def test_early_stopping_restores_the_best_weights(tiny_base, sentiment_dir, tmp_path):
    # A learning rate this large wrecks the model after the first good evaluations.
    run = _finetune(
        tiny_base,
        sentiment_dir,
        tmp_path / "run",
        train={"lr": 0.5, "epochs": 40, "early_stopping_patience": 2, "warmup_ratio": 0.0},
    )
    manifest = run.read_manifest()
    assert "early stopping" in manifest["stop_reason"]
    evals = [r for r in run.read_metrics() if "accuracy" in r]
    best = max(evals, key=lambda r: r["accuracy"])
    assert manifest["best_step"] == best["step"] < evals[-1]["step"]
    assert manifest["metrics"]["validation_accuracy"] == pytest.approx(best["accuracy"])


def test_few_labels_train_a_fixed_schedule_on_every_label(tiny_base, sentiment_dir, tmp_path):
    """8 labels per class: the 2 validation rows per class train too, at least MIN_STEPS steps run,
    and the last weights are kept (no checkpoint is chosen on a handful of rows)."""
    from fmloop.train.supervised import MIN_STEPS

    run = _finetune(tiny_base, sentiment_dir, tmp_path / "run", train={"limit_per_class": 8, "epochs": None, "lr": None,
                    "early_stopping_patience": 3})  # fmt: skip
    manifest = run.read_manifest()
    assert manifest["data_summary"]["rows"]["train"] == 16 + 2 * 1  # 8 per class and 1 per class of validation
    assert "validation" not in manifest["data_summary"]["rows"] and "validation_accuracy" not in manifest["metrics"]
    assert manifest["metrics"]["steps"] == MIN_STEPS and manifest.get("best_step") is None
    assert manifest["metrics"]["test_accuracy"] > 0.6  # chance is 0.5 (a seeded, single-thread run)


def test_the_schedule_stretches_only_when_nothing_was_set():
    from fmloop.train.config import FinetuneTrain
    from fmloop.train.supervised import MIN_STEPS, schedule

    assert schedule(FinetuneTrain(), 16, 16) == (10, MIN_STEPS, 10)  # 10 epochs of 1 step -> MIN_STEPS
    assert schedule(FinetuneTrain(epochs=3), 16, 16) == (3, 3, 1)  # epochs set: as asked
    assert schedule(FinetuneTrain(max_steps=7), 16, 16)[1] == 7
    assert schedule(FinetuneTrain(), 2000, 32) == (5, 310, 31)  # enough data: unchanged


# (strategy, steps, parameter prefixes that must leave training exactly as they entered it)
FROZEN = [
    ("linear-probe", 6, ("bert.embeddings.", "bert.encoder.")),
    ("freeze:1", 6, ("bert.embeddings.", "bert.encoder.layer.0.")),
    ("gradual", 1, ("bert.embeddings.", "bert.encoder.")),  # the first step trains the head only
    ("llrd", 6, ()),
]


@pytest.mark.parametrize("strategy,steps,frozen", FROZEN)
def test_strategies_leave_their_frozen_layers_untouched(tiny_base, sentiment_dir, tmp_path, strategy, steps, frozen):
    from safetensors.torch import load_file

    run = _finetune(tiny_base, sentiment_dir, tmp_path / "run", strategy=strategy, train={"max_steps": steps})
    assert run.read_manifest()["strategy"] == strategy
    base, tuned = load_file(tiny_base / "model.safetensors"), load_file(run.model_dir / "model.safetensors")
    checked = [k for k in tuned if k.startswith(frozen)] if frozen else []
    assert len(checked) >= (8 if frozen else 0)
    for key in checked:
        assert torch.equal(tuned[key], base[key]), f"{strategy} changed {key}, which it freezes"
    total = sum(v.numel() for v in tuned.values())
    frozen_count = sum(tuned[k].numel() for k in checked)
    if strategy != "gradual":  # gradual starts with the head only and unfreezes as it goes
        assert run.read_manifest()["trainable_parameters"] == total - frozen_count


def test_regression_task(tiny_base, tmp_path):
    from tests.conftest import make_sentiment, write_csv

    rows = [{"text": r["text"], "score": 4.0 if r["label"] == "positive" else 1.0} for r in make_sentiment(200)]
    write_csv(tmp_path / "reg.csv", rows)
    run = _finetune(tiny_base, tmp_path / "reg.csv", tmp_path / "run", task="regression", train={"epochs": 16})
    assert run.read_manifest()["metrics"]["validation_mse"] < 1.0
    assert "score" in load(run.path).predict(TEXTS[:1])[0]


def test_failed_run_leaves_no_model(tiny_base, tmp_path):
    from tests.conftest import write_csv

    write_csv(tmp_path / "train.csv", [{"text": "a", "label": "x"}, {"text": "b", "label": "y"}])
    write_csv(tmp_path / "validation.csv", [{"text": "c", "label": "w"}])
    from fmloop.core.errors import DataError

    with pytest.raises(DataError):
        _finetune(tiny_base, tmp_path, tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()


@pytest.fixture(scope="module")
def tiny_sentence_model(tiny_base, tmp_path_factory):
    """The tiny base dressed as a sentence-transformers checkpoint (modules.json): mean pooling."""
    import shutil

    folder = tmp_path_factory.mktemp("st") / "model"
    shutil.copytree(tiny_base, folder)
    (folder / "modules.json").write_text(
        '[{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]'
    )
    return folder


@pytest.mark.parametrize("strategy", ["full", "lora"])
def test_mean_pooling_for_sentence_models_saves_and_reloads_exactly(
    tiny_sentence_model, sentiment_dir, tmp_path, strategy
):
    run = _finetune(
        tiny_sentence_model,
        sentiment_dir,
        tmp_path / "run",
        strategy=strategy,
        train={"lr": 1e-2 if strategy == "lora" else 3e-3},
    )
    assert run.read_config()["model"]["pooling"] == "mean"
    config = json.loads((run.model_dir / "config.json").read_text())
    assert config["fmloop_pooling"] == "mean" and config["id2label"]["1"] == "positive"
    saved_accuracy = json.loads((run.path / "metrics.json").read_text())["metrics"]["accuracy"]
    from fmloop.evaluate.evaluation import score

    _, _, _, y, logits, _ = score(str(run.model_dir), str(sentiment_dir))
    # 48 of 60 right on CPU fp32; bf16 on a GPU lands a row or two either side
    assert (logits.argmax(1) == y).mean() == saved_accuracy >= 0.75


def test_label_budget_covers_validation_too(tiny_base, sentiment_dir, tmp_path):
    run = _finetune(tiny_base, sentiment_dir, tmp_path / "run", train={"limit_per_class": 20, "max_steps": 2})
    summary = run.read_manifest()["data_summary"]
    # the folder's own validation split is cut to the same share: 10% of 20 = 2 per class, and
    # (too few to choose a checkpoint on) they train with the 20
    assert summary["class_balance"] == {"negative": 22, "positive": 22}
    assert summary["rows"] == {"train": 44, "test": 60}
