"""`fmloop data clean` / `inspect` on a small dataset with every kind of problem planted."""

import hashlib
import json

import pyarrow.parquet as pq
import pytest

from fmloop.core.errors import ConfigError
from fmloop.data.cleaning import CleanSettings
from fmloop.data.curate import clean_dataset
from fmloop.data.labeled import load_labeled
from tests.conftest import make_sentiment, run_cli, write_csv

LONG = (
    "this movie was a long and winding journey through the history of a small town and its people "
    "with wonderful acting from everyone involved and a score that stays with you"
)


def _planted(folder):
    folder.mkdir()
    rows = make_sentiment(40, seed=5)
    rows[3]["text"] = rows[1]["text"].upper() + " !"  # duplicate of row 2
    rows[5]["text"] = "Great film.<br /><br />Really great &amp; moving"  # HTML remnants
    rows[6]["text"] = "doesnâ€™t work for me and it was bad"  # mojibake
    rows[7]["text"] = LONG
    rows[8]["text"] = LONG.replace(" small ", " ").replace("wonderful", "Wonderful,")  # near-duplicate of row 8
    rows[9]["text"] = ""  # empty
    rows[10]["label"] = "Positive "  # a label variant
    write_csv(folder / "train.csv", rows)
    val = make_sentiment(10, seed=6)
    val[0]["text"] = rows[0]["text"]  # leaks from train
    write_csv(folder / "validation.csv", val)
    return folder


def test_clean_removes_with_reasons_and_finetune_reads_the_result(tmp_path):
    src = _planted(tmp_path / "src")
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()}
    report = clean_dataset(str(src), tmp_path / "clean", normalize_labels=True)
    removed = [json.loads(line) for line in (tmp_path / "clean" / "removed.jsonl").read_text().splitlines()]
    by_row = {(r["split"], r["row"]): r["reason"] for r in removed}
    assert by_row[("train", 4)] == "duplicate" and by_row[("train", 9)] == "near_duplicate"
    assert by_row[("train", 10)] == "empty" and by_row[("validation", 1)] == "leak"
    assert report["splits"]["train"]["kept"] == 40 - sum(1 for r in removed if r["split"] == "train")
    texts = pq.read_table(tmp_path / "clean" / "train.parquet").column("text").to_pylist()
    assert "Great film. Really great & moving" in texts and "doesn't work for me and it was bad" in texts
    data = load_labeled(str(tmp_path / "clean"))  # what finetune reads
    n_val_removed = sum(1 for r in removed if r["split"] == "validation")
    assert data.labels == ["negative", "positive"] and len(data.splits["validation"]) == 10 - n_val_removed
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in src.iterdir()} == before
    with pytest.raises(ConfigError, match="not empty"):
        clean_dataset(str(src), tmp_path / "clean")


def test_language_filter_and_length_bounds(tmp_path):
    rows = [
        {"text": LONG, "label": "a"},
        {"text": "ce film est une longue histoire d'une petite ville et de ses habitants", "label": "b"},
        {"text": "ok", "label": "a"},
        {"text": LONG.replace("movie", "film"), "label": "b"},
    ]
    write_csv(tmp_path / "train.csv", rows)
    clean_dataset(
        str(tmp_path / "train.csv"), tmp_path / "clean", CleanSettings(languages=["en"], min_words=2, near_dedup=False)
    )
    reasons = [json.loads(line)["reason"] for line in (tmp_path / "clean" / "removed.jsonl").read_text().splitlines()]
    assert reasons == ["language", "too_short"]


def test_inspect_reports_problems_and_writes_a_report(tmp_path):
    src = _planted(tmp_path / "src")
    result = run_cli("data", "inspect", str(src), "--out", str(tmp_path / "insp"))
    assert result.returncode == 0, result.stderr
    info = json.loads((tmp_path / "insp" / "inspect.json").read_text())
    train = info["splits"]["train"]
    # (the synthetic sentences share a template, so a few of them are near-duplicates of each other too)
    assert (
        train["issues"]["duplicate"] == 1 and train["issues"]["near_duplicate"] >= 1 and train["issues"]["empty"] == 1
    )
    assert train["html_remnants"] == 1 and train["garbled"] >= 1 and train["languages"]["en"] > 0.5
    assert train["label_variants"]["positive"] == ["positive", "Positive "] or sorted(
        train["label_variants"]["positive"]
    ) == ["Positive ", "positive"]
    assert info["splits"]["validation"]["issues"]["leak"] >= 1
    assert (tmp_path / "insp" / "report.html").read_text().count("data:image/png") >= 2


def test_a_ragged_csv_names_its_line(tmp_path):
    (tmp_path / "bad.csv").write_text("text,label\ngood film,positive\nbad film,negative,extra\n")
    result = run_cli("data", "clean", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "out"))
    assert result.returncode == 3 and "bad.csv, line 3: 3 fields where the header has 2" in result.stderr
    assert not (tmp_path / "out").exists()


def test_clean_drops_a_test_split_without_labels_and_validation_stands_in(tmp_path):
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    from fmloop.data.curate import clean_dataset

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    rows = {
        "train": [{"sentence": f"train sentence {i}", "label": i % 2} for i in range(20)],
        "validation": [{"sentence": f"held sentence {i}", "label": i % 2} for i in range(6)],
        "test": [{"sentence": f"secret sentence {i}", "label": -1} for i in range(5)],
    }
    DatasetDict({k: Dataset.from_list(v, features=features) for k, v in rows.items()}).save_to_disk(
        str(tmp_path / "hub")
    )
    report = clean_dataset(str(tmp_path / "hub"), tmp_path / "clean")
    assert "stands in as the test split" in report["unlabeled_splits"]
    assert sorted(report["splits"]) == ["test", "train"]
    assert report["splits"]["test"]["rows"] == 6
