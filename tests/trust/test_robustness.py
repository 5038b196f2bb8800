"""The perturbation suite: each perturbation changes what it says and only that, seeded; a model
is scored under every one of them."""

import numpy as np

from fmloop.models.loading import load
from fmloop.trust.robustness import IMAGE_PERTURBATIONS, TEXT_PERTURBATIONS, image_robustness, text_robustness
from tests.conftest import make_sentiment


def _apply(name, text, seed=0):
    return TEXT_PERTURBATIONS[name](text, np.random.default_rng(seed))


def test_each_text_perturbation_changes_what_it_names():
    text = "Mary paid 20 dollars for a wonderful evening. It was great!"
    typo = _apply("typo: keyboard neighbour", text)
    assert typo != text and len(typo) == len(text) and sum(a != b for a, b in zip(typo, text)) == 1
    assert len(_apply("typo: dropped letter", text)) == len(text) - 1
    assert _apply("upper case", text) == text.upper()
    assert not any(c in _apply("no punctuation", text) for c in ".!")
    assert _apply("whitespace noise", text).split() == text.split()
    swapped = _apply("numbers swapped", text)
    assert "20" not in swapped and swapped.replace(swapped.split()[2], "20") == text
    named = _apply("names swapped", text)
    assert not named.startswith("Mary") and named.split(" ", 1)[1] == text.split(" ", 1)[1]
    assert _apply("names swapped", "no one here") == "no one here"  # nothing to swap: unchanged
    assert _apply("typo: keyboard neighbour", text, 3) == _apply("typo: keyboard neighbour", text, 3)


def test_a_model_is_scored_under_every_perturbation(text_run):
    model = load(text_run, device="cpu")
    rows = make_sentiment(80, seed=5)
    y = np.array([model.labels.index(r["label"]) for r in rows])
    found = text_robustness(model, [r["text"] for r in rows], y)
    names = [r["name"] for r in found["perturbations"]]
    assert names == list(TEXT_PERTURBATIONS)
    by_name = dict(zip(names, found["perturbations"]))
    assert by_name["names swapped"]["changed"] == 0 and by_name["names swapped"]["invariance"] is None
    assert by_name["typo: dropped letter"]["changed"] == 80 and 0 <= by_name["typo: dropped letter"]["invariance"] <= 1
    assert [d["name"].split(":")[0] for d in found["directional"]] == ["append 'i loved it .'", "append 'i hated it .'"]
    summary = found["summary"]
    assert summary["clean_accuracy"] == (model.logits([r["text"] for r in rows]).argmax(-1) == y).mean()


def test_images_are_scored_at_three_severities(image_run, image_dir):
    model = load(image_run, device="cpu")
    pixels = model.to_pixels(sorted(str(p) for p in image_dir.rglob("*.png"))[:12])
    y = np.zeros(12, dtype=int)
    found = image_robustness(model, pixels, y)
    assert len(found["perturbations"]) == 3 * len(IMAGE_PERTURBATIONS)
    assert all(0 <= r["invariance"] <= 1 for r in found["perturbations"])
