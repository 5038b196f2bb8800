"""Words and word pieces for token classification: splitting raw text, first-piece targets."""

import numpy as np

from fmloop.data.reading import Reading
from fmloop.data.tagged import IGNORE
from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.tokens import as_words, encode_words, split_words


def test_split_words_keeps_offsets():
    text = "It's Ada Lovelace, in London."
    words, offsets = split_words(text)
    assert words == ["It", "'s", "Ada", "Lovelace", ",", "in", "London", "."]
    assert [text[a:b] for a, b in offsets] == words


def test_word_lists_get_offsets_into_their_joined_text():
    words, offsets, texts = as_words([["Ada", "Lovelace"]])
    assert texts == ["Ada Lovelace"] and offsets == [[(0, 3), (4, 12)]]


def test_first_piece_carries_the_tag_and_the_cut_words_have_none(tiny_base):
    tokenizer = load_tokenizer(tiny_base)
    sentence = ["wonderful", "film", "xq"]
    ((ids, first, targets),) = encode_words(tokenizer, [sentence], Reading(64, "head"), [[1, 0, 2]])
    assert (first >= 0).all() and first[0] == 1  # after [CLS]
    np.testing.assert_array_equal(targets[first], [1, 0, 2])
    assert (targets != IGNORE).sum() == 3
    ((_, cut_first),) = encode_words(tokenizer, [sentence * 20], Reading(8, "head"))
    assert (cut_first < 0).any() and (cut_first[:3] >= 0).all()
