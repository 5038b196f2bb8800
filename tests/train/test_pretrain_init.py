"""A from-scratch language model starts out predicting the corpus's token frequencies."""

import json
import math

import numpy as np
import torch
from datasets import Dataset
from safetensors.torch import load_file
from transformers import BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

from fmloop.core.config import load_config
from fmloop.data.text import TokenStore
from fmloop.train import pretrain
from fmloop.train.config import PretrainConfig
from fmloop.train.pretrain import init_output_bias_to_unigram
from tests.conftest import tiny_overrides

SPECIAL = [0, 1]


def _store(sequences):
    return TokenStore(Dataset.from_dict({"input_ids": sequences}))


def test_output_bias_holds_the_log_frequencies_of_ordinary_tokens():
    # token 5 four times, 6 twice, 7 once, 8-9 never; 0 and 1 are special (CLS/SEP) and frequent
    store = _store([[0, 5, 5, 6, 7, 1], [0, 5, 5, 6, 1]])
    model = BertForMaskedLM(
        BertConfig(vocab_size=10, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32)
    )
    assert init_output_bias_to_unigram(model, store, SPECIAL)
    bias = model.cls.predictions.bias.detach()
    probs = torch.softmax(bias, 0).numpy()
    expected = np.array([0, 0, 0, 0, 0, 4, 2, 1, 0, 0], dtype=float) + 1
    np.testing.assert_allclose(probs, expected / expected.sum(), rtol=1e-5)
    assert bias[0] == bias[8]  # a special token is no likelier than an unseen one
    assert model.get_output_embeddings().bias is model.cls.predictions.bias  # the head really uses it


def test_heads_without_output_bias_are_left_alone():
    model = GPT2LMHeadModel(GPT2Config(vocab_size=10, n_embd=16, n_layer=1, n_head=2))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not init_output_bias_to_unigram(model, _store([[3, 4, 4]]), SPECIAL)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_fresh_masked_lm_starts_at_the_unigram_loss_then_learns_context(corpus_file, tmp_path):
    """Before the first step the held-out loss is the unigram cross-entropy, well below log(vocab);
    the structured corpus then rewards using context, which takes the loss below that."""
    overrides = tiny_overrides(corpus_file, max_steps=60, eval_every=10)
    run = pretrain.run(load_config(PretrainConfig, overrides=overrides), out=tmp_path / "run")
    metrics = json.loads((run.path / "manifest.json").read_text())["metrics"]
    vocab = len(json.loads((run.path / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"])
    assert metrics["initial_eval_loss"] < math.log(vocab) - 1.0
    assert metrics["eval_loss"] < metrics["initial_eval_loss"] - 0.1
    saved = load_file(run.path / "model" / "model.safetensors")
    bias = next(v for k, v in saved.items() if k.endswith("predictions.bias"))
    assert bias.std() > 0.5  # log-frequencies, not the zeros BERT starts with
