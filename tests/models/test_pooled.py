import torch

from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.classifier import build_task_model
from fmloop.models.pooled import MeanPoolClassifier


def test_mean_pooling_ignores_padding(tiny_base):
    tok = load_tokenizer(tiny_base)
    model = build_task_model(str(tiny_base), "classification", ["a", "b"], tok, pooling="mean").model
    assert isinstance(model, MeanPoolClassifier)
    model.eval()
    alone = tok(["the cat sees the river"], return_tensors="pt")
    padded = tok(
        ["the cat sees the river", "a dog finds a small house and it was great again today"],
        padding=True,
        return_tensors="pt",
    )
    a = model(input_ids=alone["input_ids"], attention_mask=alone["attention_mask"]).logits
    b = model(input_ids=padded["input_ids"], attention_mask=padded["attention_mask"]).logits[:1]
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_save_and_load_round_trip(tiny_base, tmp_path):
    tok = load_tokenizer(tiny_base)
    model = build_task_model(str(tiny_base), "classification", ["a", "b", "c"], tok, pooling="mean").model
    model.eval()
    model.save_pretrained(tmp_path / "m")
    again = MeanPoolClassifier.load(tmp_path / "m")
    enc = tok(["one two three"], return_tensors="pt")
    torch.testing.assert_close(again(**enc).logits, model(**enc).logits)
    assert again.config.id2label[2] == "c"
