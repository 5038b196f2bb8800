"""Explanations: integrated gradients add up to what they explain, ablation scores are what removing
each word does, words map back to the text, and images get a heatmap of their own size."""

import numpy as np
import pytest

from fmloop.core.errors import DataError
from fmloop.models.loading import load
from fmloop.trust.explain import _word_ablation, explain_images, explain_one, explain_texts, without_words, word_spans

TEXTS = ["my friend sees the river and it was great today", "the old man finds a song and it was awful again"]


@pytest.fixture(scope="module")
def model(text_run):
    return load(text_run, device="cpu")


def test_integrated_gradients_add_up_to_the_change_they_explain(model):
    for text, e in zip(TEXTS, explain_texts(model, TEXTS)):
        assert [w["word"] for w in e.words] == text.split()
        assert all(text[w["start"] : w["end"]] == w["word"] and w["read"] for w in e.words)
        assert e.target == model.predict([text])[0]["label"] and e.method.startswith("integrated gradients")
        assert e.output == pytest.approx(model.predict([text])[0]["probabilities"][e.target], abs=1e-4)
        assert e.convergence_delta < 0.02  # completeness: the scores sum to F(x) - F(baseline)


def test_a_named_target_is_explained_and_an_unknown_one_is_a_clear_error(model):
    e = explain_texts(model, TEXTS[:1], target="negative")[0]
    assert e.target == "negative"
    with pytest.raises(DataError, match="not one of the model's labels"):
        explain_texts(model, TEXTS[:1], target="neutral")


def test_ablation_scores_are_the_drop_when_each_word_is_removed(model):
    text = TEXTS[0]
    e = _word_ablation(model, text, 1)
    spans = word_spans(text)
    whole = model.predict([text])[0]["probabilities"]["positive"]
    for i in (0, 7, 8):
        without = model.predict([without_words(text, spans, {i})])[0]["probabilities"]["positive"]
        assert e.words[i]["score"] == pytest.approx(whole - without, abs=1e-4)


def test_models_without_gradients_are_explained_by_ablation(text_run, tmp_path):
    from fmloop.compress.quantize import save_torch_int8

    save_torch_int8(load(text_run, device="cpu"), tmp_path)
    e = explain_one(load(tmp_path), TEXTS[0])
    assert e.method.startswith("ablation") and len(e.words) == len(TEXTS[0].split())
    assert e.convergence_delta is None


def test_images_get_a_heatmap_of_their_own_size(image_run, image_dir):
    model = load(image_run, device="cpu")
    pixels = model.to_pixels(sorted(str(p) for p in image_dir.rglob("*.png"))[:2])
    for e in explain_images(model, pixels):
        heat = np.asarray(e.heatmap)
        assert heat.shape == pixels.shape[1:3] and np.abs(heat).sum() > 0
        assert e.convergence_delta is not None and e.target in model.labels
    from fmloop.trust.explain import _image_occlusion

    occluded = _image_occlusion(model, pixels[0], 0)
    assert np.asarray(occluded.heatmap).shape == pixels.shape[1:3] and occluded.method.startswith("occlusion")
