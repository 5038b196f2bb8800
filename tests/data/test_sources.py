import gzip
import json

import datasets
import pytest

from fmloop.core.errors import DataError
from fmloop.data.sources import load_text_corpus
from tests.conftest import make_corpus

DOCS = make_corpus(60)


def _write_jsonl(path, rows, gz=False):
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    path.write_bytes(gzip.compress(data) if gz else data)


@pytest.mark.parametrize("kind", ["txt", "csv", "tsv", "jsonl", "jsonl.gz", "parquet"])
def test_each_file_format_loads_with_a_held_out_split(tmp_path, kind):
    path = tmp_path / f"data.{kind}"
    rows = [{"body": d, "id": i} for i, d in enumerate(DOCS)]
    if kind == "txt":
        path.write_text("\n".join(DOCS) + "\n\n")
    elif kind in ("csv", "tsv"):
        datasets.Dataset.from_list(rows).to_csv(str(path), sep="\t" if kind == "tsv" else ",", index=False)
    elif kind == "parquet":
        datasets.Dataset.from_list(rows).to_parquet(str(path))
    else:
        _write_jsonl(path, rows, gz=kind.endswith("gz"))
    corpus = load_text_corpus(str(path), column=None if kind == "txt" else "body", validation_fraction=0.1, seed=1)
    train, val = corpus.splits["train"], corpus.splits["validation"]
    assert len(train) + len(val) == len(DOCS) and len(val) == 6
    assert train.column_names == ["text"]
    assert set(train["text"]) | set(val["text"]) == set(DOCS)
    assert len(corpus.fingerprint) == 16


def test_split_is_seeded(tmp_path):
    path = tmp_path / "d.txt"
    path.write_text("\n".join(DOCS))
    a = load_text_corpus(str(path), seed=3).splits["validation"]["text"]
    b = load_text_corpus(str(path), seed=3).splits["validation"]["text"]
    c = load_text_corpus(str(path), seed=4).splits["validation"]["text"]
    assert a == b and a != c


def test_folder_of_text_files_is_a_document_per_file(tmp_path):
    for i, doc in enumerate(DOCS[:10]):
        (tmp_path / f"doc{i}.txt").write_text(doc + "\nsecond line of the same document")
    corpus = load_text_corpus(str(tmp_path), validation_fraction=0.2)
    assert len(corpus.splits["train"]) + len(corpus.splits["validation"]) == 10
    assert all("second line" in t for t in corpus.splits["train"]["text"])


def test_folder_with_split_files_uses_them(tmp_path):
    _write_jsonl(tmp_path / "train.jsonl", [{"text": d} for d in DOCS[:50]])
    _write_jsonl(tmp_path / "validation.jsonl", [{"text": d} for d in DOCS[50:]])
    corpus = load_text_corpus(str(tmp_path))
    assert len(corpus.splits["train"]) == 50 and len(corpus.splits["validation"]) == 10


def test_save_to_disk_folder(tmp_path):
    datasets.DatasetDict(
        train=datasets.Dataset.from_dict({"text": DOCS[:40]}), test=datasets.Dataset.from_dict({"text": DOCS[40:]})
    ).save_to_disk(str(tmp_path / "ds"))
    corpus = load_text_corpus(str(tmp_path / "ds"))
    assert len(corpus.splits["train"]) == 40 and len(corpus.splits["validation"]) == 20


def test_wrong_column_lists_the_existing_ones(tmp_path):
    path = tmp_path / "d.csv"
    datasets.Dataset.from_dict({"review": DOCS, "stars": list(range(len(DOCS)))}).to_csv(str(path), index=False)
    with pytest.raises(DataError, match=r"no column 'text'.*review, stars") as err:
        load_text_corpus(str(path), column="text")
    assert str(path) in str(err.value)


def test_missing_empty_and_unsupported_files(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_text_corpus(str(tmp_path / "nope.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_text_corpus(str(tmp_path / "empty.txt"))
    (tmp_path / "blank.txt").write_text("\n  \n\n")
    with pytest.raises(DataError, match="no non-empty documents"):
        load_text_corpus(str(tmp_path / "blank.txt"))
    (tmp_path / "x.docx").write_text("hi")
    with pytest.raises(DataError, match="unsupported file type"):
        load_text_corpus(str(tmp_path / "x.docx"))


def test_undecodable_bytes_name_the_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "also fine"}\n{"text": "caf\xe9 latin-1"}\n')
    with pytest.raises(DataError, match=r"bad.jsonl, line 3: bytes that are not valid UTF-8"):
        load_text_corpus(str(path))


def test_hub_id_fails_clearly_offline(monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError, match="Hugging Face hub"):
        load_text_corpus("someone/no-such-dataset-xyz")
