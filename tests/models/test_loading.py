import pytest
import torch

from fmloop.core.errors import ConfigError
from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.classifier import build_task_model
from fmloop.models.inference import inference_device
from fmloop.models.loading import load


def test_auto_device_is_the_gpu_when_one_is_visible():
    assert inference_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert inference_device("cpu") == torch.device("cpu")


def test_a_device_torch_does_not_know_names_the_parameter():
    with pytest.raises(ConfigError, match="'device' parameter 'gpu0'"):
        inference_device("gpu0")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a CPU-only machine gives")
def test_cuda_without_a_gpu_says_to_use_the_cpu():
    with pytest.raises(ConfigError, match="Use device=cpu"):
        inference_device("cuda")


def test_loaded_text_model_scores_on_its_device(tiny_base, tmp_path):
    tok = load_tokenizer(tiny_base)
    model = build_task_model(str(tiny_base), "classification", ["neg", "pos"], tok, pooling="mean").model
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    clf = load(tmp_path / "m", device="cpu")
    assert clf.device == torch.device("cpu") and next(clf.model.parameters()).device == clf.device
    logits = clf.logits(["the cat sees the river", "a dog"])
    assert logits.shape == (2, 2) and logits.dtype.name == "float32"
