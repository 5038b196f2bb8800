"""Tagged sentences (CoNLL and JSONL) for token classification: reading, tag order, clear errors."""

import gzip
import json

import numpy as np
import pytest

from fmloop.core.errors import DataError
from fmloop.data.tagged import is_tagged_source, read_tagged, tag_ids, tag_order
from fmloop.tasks.tokens import IGNORE

CONLL = "-DOCSTART- O\n\nAda\tB-PER\nLovelace\tI-PER\nlived\tO\nin\tO\nLondon\tB-LOC\n\nHello\tO\nParis\tB-LOC\n"


def test_conll_file_reads_sentences_words_and_tags(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text(CONLL)
    data = read_tagged(str(path), hold_out=False)
    train = data.splits["train"]
    assert train.words == [["Ada", "Lovelace", "lived", "in", "London"], ["Hello", "Paris"]]
    assert train.tags[0] == ["B-PER", "I-PER", "O", "O", "B-LOC"]
    assert data.labels == ["O", "B-LOC", "B-PER", "I-PER"]
    assert is_tagged_source(path)


def test_folder_of_gzipped_and_jsonl_splits(tmp_path):
    with gzip.open(tmp_path / "train.conll.gz", "wt") as fh:
        fh.write(CONLL)
    rows = [{"tokens": ["Rome", "!"], "tags": ["B-LOC", "O"]}]
    (tmp_path / "dev.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert is_tagged_source(tmp_path)
    data = read_tagged(str(tmp_path))
    assert sorted(data.splits) == ["train", "validation"]
    assert data.splits["validation"].words == [["Rome", "!"]]


def test_validation_is_held_out_when_absent(tmp_path):
    path = tmp_path / "train.conll"
    path.write_text("\n\n".join(f"w{i}\tO\nParis\tB-LOC" for i in range(20)) + "\n")
    data = read_tagged(str(path), validation_fraction=0.25, seed=0)
    assert len(data.splits["train"]) == 15 and len(data.splits["validation"]) == 5
    assert not set(map(tuple, data.splits["train"].words)) & set(map(tuple, data.splits["validation"].words))


@pytest.mark.parametrize(
    "content, message",
    [
        ("Ada\tB-PER\nLovelace\n", "line 2: the word 'Lovelace' has no tag"),
        ("Ada\tPERSON\n", "line 1: tag 'PERSON' is not IOB2/BIOES"),
    ],
)
def test_bad_conll_lines_are_named(tmp_path, content, message):
    path = tmp_path / "train.conll"
    path.write_text(content)
    with pytest.raises(DataError, match=message):
        read_tagged(str(path))


def test_bad_jsonl_rows_are_named(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"tokens": ["a", "b"], "tags": ["O"]}) + "\n")
    with pytest.raises(DataError, match=r"line 1: 2 tokens but 1 tags"):
        read_tagged(str(path))


def test_a_test_tag_unseen_in_training_is_an_error(tmp_path):
    (tmp_path / "train.conll").write_text("Ada\tB-PER\n")
    (tmp_path / "test.conll").write_text("Paris\tB-LOC\n")
    with pytest.raises(DataError, match=r"test.conll, sentence 1: tag 'B-LOC' is not in the tag set"):
        read_tagged(str(tmp_path))


def test_classification_files_are_not_tagged(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\nhello,a\n")
    (tmp_path / "train.jsonl").write_text(json.dumps({"text": "hi", "label": "a"}) + "\n")
    assert not is_tagged_source(tmp_path / "train.csv")
    assert not is_tagged_source(tmp_path / "train.jsonl")


def test_tag_order_and_ids():
    assert tag_order({"I-PER", "B-PER", "O", "B-LOC", "S-LOC"}) == ["O", "B-LOC", "S-LOC", "B-PER", "I-PER"]
    ids = tag_ids([["B-PER", "O"], ["O"]], ["O", "B-PER"])
    np.testing.assert_array_equal(ids, [[1, 0], [0, IGNORE]])
