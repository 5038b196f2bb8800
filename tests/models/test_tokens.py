"""Words and word pieces for token classification: splitting raw text, first-piece targets."""

import numpy as np
import pytest

from fmloop.data.reading import Reading
from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.tokens import as_words, encode_words, entity_tags, split_words
from fmloop.tasks.tokens import IGNORE


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


IOB2 = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]


def test_entity_spans_become_the_tags_of_the_words_they_touch():
    text = "we saw Ada Lovelace in New York"
    assert entity_tags([("PER", 7, 19), ("LOC", 23, 31)], text, IOB2) == [
        "O", "O", "B-PER", "I-PER", "O", "B-LOC", "I-LOC",
    ]  # fmt: skip
    assert entity_tags([("PER", 8, 12)], text, IOB2)[2:4] == ["B-PER", "I-PER"]  # a span inside words covers them
    bioes = ["O", "B-PER", "I-PER", "E-PER", "S-PER"]
    assert entity_tags([("PER", 0, 6), ("PER", 7, 10)], "we saw Ada", bioes) == ["B-PER", "E-PER", "S-PER"]
    assert entity_tags([], text, IOB2) == ["O"] * 7


@pytest.mark.parametrize(
    "entities, needle",
    [
        ([("ORG", 0, 2)], "label.0: 'ORG' is not an entity type"),
        ([("PER", 5, 50)], "label.0: characters 5..50 are not a span"),
        ([("PER", 2, 3)], "label.0: characters 2..3 hold no word"),
        ([("PER", 7, 10), ("LOC", 9, 19)], "label.1: 'a Lovelace' overlaps another entity"),
        ([("LOC", 7, 19)], "no tag 'I-LOC'"),
    ],
)
def test_spans_that_do_not_fit_are_named(entities, needle):
    with pytest.raises(ValueError, match=needle):
        entity_tags(entities, "we saw Ada Lovelace", ["O", "B-LOC", "B-PER", "I-PER"])
