import pytest
import torch

from fmloop.adapt.strategies import apply_strategy, scale_head_lr
from fmloop.core.errors import ConfigError
from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.anatomy import depth_of
from fmloop.models.classifier import build_task_model


def _model(tiny_base):
    tok = load_tokenizer(tiny_base)
    torch.manual_seed(0)
    return build_task_model(str(tiny_base), "classification", ["neg", "pos"], tok).model


def _trainable(model):
    return {n for n, p in model.named_parameters() if p.requires_grad}


def test_linear_probe_trains_only_the_head(tiny_base):
    model = apply_strategy(_model(tiny_base), "linear-probe", total_steps=10).model
    assert _trainable(model) == {
        "bert.pooler.dense.weight",
        "bert.pooler.dense.bias",
        "classifier.weight",
        "classifier.bias",
    }


def test_freeze_k_freezes_embeddings_and_bottom_layers(tiny_base):
    model = apply_strategy(_model(tiny_base), "freeze:1", total_steps=10).model
    names = _trainable(model)
    assert not any(n.startswith(("bert.embeddings", "bert.encoder.layer.0.")) for n in names)
    assert any(n.startswith("bert.encoder.layer.1.") for n in names) and "classifier.weight" in names
    with pytest.raises(ConfigError, match="has 2"):
        apply_strategy(_model(tiny_base), "freeze:5", total_steps=10)


def test_llrd_scales_by_depth(tiny_base):
    model = _model(tiny_base)
    plan = apply_strategy(model, "llrd", total_steps=10, llrd_decay=0.5)
    assert plan.lr_scale("classifier.weight") == 1.0
    assert plan.lr_scale("bert.encoder.layer.1.output.dense.weight") == 0.5
    assert plan.lr_scale("bert.encoder.layer.0.output.dense.weight") == 0.25
    assert plan.lr_scale("bert.embeddings.word_embeddings.weight") == 0.125
    assert depth_of(model)("bert.pooler.dense.weight") == 3


def test_the_head_lr_scale_multiplies_the_head_only_under_any_strategy(tiny_base):
    model = _model(tiny_base)
    plan = apply_strategy(model, "llrd", total_steps=10, llrd_decay=0.5)
    scale_head_lr(plan, model, 10)
    assert plan.lr_scale("classifier.weight") == 10.0 and plan.lr_scale("bert.pooler.dense.bias") == 10.0
    assert plan.lr_scale("bert.encoder.layer.1.output.dense.weight") == 0.5 and "head lr x10" in plan.description
    peft_name = "base_model.model.classifier.modules_to_save.default.weight"  # inside a LoRA wrapper
    full = apply_strategy(model, "full", total_steps=10)
    scale_head_lr(full, model, 4)
    assert full.lr_scale(peft_name) == 4.0 and full.lr_scale("bert.embeddings.word_embeddings.weight") == 1.0


def test_gradual_unfreezing_reaches_every_layer_by_mid_run(tiny_base):
    plan = apply_strategy(_model(tiny_base), "gradual", total_steps=60)
    unfreeze = plan.callbacks[0]
    seen = []
    for step in range(0, 61, 10):
        unfreeze._apply(step)
        seen.append(len(_trainable(plan.model)))
    assert seen == sorted(seen) and seen[0] == 4
    assert seen[3] == len(list(plan.model.parameters()))  # all trainable by step 30 of 60


def test_unknown_strategy():
    with pytest.raises(ConfigError, match="linear-probe"):
        apply_strategy(torch.nn.Linear(2, 2), "half", total_steps=1)


@pytest.mark.parametrize("pooling", ["native", "mean"])
def test_freeze_input_embeddings_fixes_the_token_matrix_under_either_head(tiny_base, pooling):
    # The mean-pooling head wraps its encoder; the flag once skipped it silently.
    from fmloop.adapt.strategies import freeze_input_embeddings

    tok = load_tokenizer(tiny_base)
    model = build_task_model(str(tiny_base), "classification", ["neg", "pos"], tok, pooling=pooling).model
    matrix = model.get_input_embeddings().weight
    freeze_input_embeddings(model)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert not matrix.requires_grad and len(frozen) == 1 and next(iter(frozen)).endswith("word_embeddings.weight")


def test_default_lora_rank_is_32_but_stays_low_rank_on_narrow_models():
    from fmloop.adapt.strategies import default_lora_rank

    assert default_lora_rank(384) == 32  # MiniLM: the measured recipe
    assert default_lora_rank(768) == 32
    assert default_lora_rank(128) == 16  # bert-tiny
    assert default_lora_rank(4) == 1
    assert default_lora_rank(None) == 32  # width unknown
