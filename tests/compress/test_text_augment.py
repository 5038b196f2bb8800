"""Word-substitution augmentation: swaps whole words for their nearest neighbours in the
teacher's embedding table, seeded, and leaves everything else alone."""

import torch
from transformers import BertTokenizerFast

from fmloop.compress.text_augment import augment_texts, neighbours

VOCAB = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    ".",
    ",",
    "##s",
    "a",
    "the",
    "film",
    "movie",
    "good",
    "great",
    "bad",
    "plot",
    "story",
    "was",
]


def _tokenizer(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(VOCAB) + "\n")
    return BertTokenizerFast(str(tmp_path / "vocab.txt"), do_lower_case=True)


def _embeddings():
    """Pairs of near-identical rows: film~movie, good~great, plot~story; the rest far apart."""
    torch.manual_seed(0)
    table = torch.randn(len(VOCAB), 16)
    for a, b in [("film", "movie"), ("good", "great"), ("plot", "story")]:
        table[VOCAB.index(b)] = table[VOCAB.index(a)] + 0.01 * torch.randn(16)
    return table


def test_neighbours_are_the_nearest_other_words():
    ids = torch.arange(len(VOCAB)).numpy()
    near = neighbours(_embeddings(), ids[[10, 12]], ids[8:], k=1)
    assert [VOCAB[i] for i in near[:, 0]] == ["movie", "great"]


def test_variants_swap_whole_words_for_neighbours_and_are_seeded(tmp_path):
    tok = _tokenizer(tmp_path)
    texts = ["Film, good plot.", "zzz film qqq"]
    out = augment_texts(texts, tok, _embeddings(), n=20, p=1.0, k=1, seed=3)
    # p=1, k=1: every known word becomes its one nearest neighbour, so one distinct variant each;
    # capitals, punctuation and out-of-vocabulary words stay as they were
    assert out == ["Movie, great story.", "zzz movie qqq"]
    again = augment_texts(texts, tok, _embeddings(), n=5, p=0.5, k=2, seed=3)
    assert again == augment_texts(texts, tok, _embeddings(), n=5, p=0.5, k=2, seed=3)
    assert len(again) <= 10 and all(v not in texts for v in again) and len(set(again)) == len(again)


def test_nothing_to_swap_gives_nothing(tmp_path):
    tok = _tokenizer(tmp_path)
    assert augment_texts(["zzz qqq"], tok, _embeddings(), n=3) == []
    assert augment_texts(["the film"], tok, _embeddings(), n=0) == []
