import pytest

from fmloop.core.errors import DataError
from fmloop.data.labeled import load_labeled
from tests.conftest import make_sentiment, write_csv


def test_string_labels_map_to_sorted_ids_and_split_is_stratified(tmp_path):
    rows = make_sentiment(200)
    data = load_labeled(str(write_csv(tmp_path / "d.csv", rows)), validation_fraction=0.2, seed=0)
    assert data.labels == ["negative", "positive"]
    n_pos = sum(r["label"] == "positive" for r in rows)
    val = data.splits["validation"]["label"]
    assert abs(sum(val) - round(n_pos * 0.2)) <= 1  # the class ratio is kept in validation
    assert len(val) + len(data.splits["train"]) == 200


def test_unseen_validation_label_names_file_and_row(tmp_path):
    write_csv(tmp_path / "train.csv", [{"text": "a b", "label": "x"}, {"text": "c d", "label": "y"}])
    write_csv(tmp_path / "validation.csv", [{"text": "e", "label": "x"}, {"text": "f", "label": "z"}])
    with pytest.raises(DataError, match=r"validation.csv, row 2: label 'z' never occurs in the training data"):
        load_labeled(str(tmp_path))


def test_one_class_is_refused(tmp_path):
    path = write_csv(tmp_path / "d.csv", [{"text": f"t{i}", "label": "same"} for i in range(10)])
    with pytest.raises(DataError, match="one class"):
        load_labeled(str(path))


def test_empty_text_row_is_named(tmp_path):
    path = write_csv(tmp_path / "d.csv", [{"text": "fine", "label": "a"}, {"text": "  ", "label": "b"}])
    with pytest.raises(DataError, match=r"d.csv, row 2: empty text"):
        load_labeled(str(path))


def test_non_numeric_regression_target_is_named(tmp_path):
    path = write_csv(tmp_path / "d.csv", [{"text": "a", "score": "1.5"}, {"text": "b", "score": "high"}])
    with pytest.raises(DataError, match=r"row 2: regression target 'high'"):
        load_labeled(str(path), task="regression")


def test_multilabel_from_delimited_strings(tmp_path):
    path = write_csv(
        tmp_path / "d.csv",
        [{"text": f"t{i}", "label": lab} for i, lab in enumerate(["a,b", "b", "c|a", "a", "b;c"] * 4)],
    )
    data = load_labeled(str(path), task="multilabel", hold_out=False)
    assert data.labels == ["a", "b", "c"]
    assert data.splits["train"]["label"][0] == [1.0, 1.0, 0.0]


def test_wrong_label_column_lists_columns(tmp_path):
    path = write_csv(tmp_path / "d.csv", [{"text": "a", "stars": 1}, {"text": "b", "stars": 2}])
    with pytest.raises(DataError, match=r"no label column 'label'.*text, stars"):
        load_labeled(str(path), label_column="label")


def test_a_test_split_without_labels_is_not_scored_and_validation_stands_in(tmp_path):
    # the hub's SST-2 layout: ClassLabel features, every test label -1
    from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

    features = Features({"sentence": Value("string"), "label": ClassLabel(names=["negative", "positive"])})
    train = [{"sentence": f"good film {i}" if i % 2 else f"bad film {i}", "label": i % 2} for i in range(40)]
    validation = [{"sentence": f"held {i}", "label": i % 2} for i in range(6)]
    test = [{"sentence": f"secret {i}", "label": -1} for i in range(5)]
    DatasetDict(
        {name: Dataset.from_list(rows, features=features) for name, rows in
         (("train", train), ("validation", validation), ("test", test))}
    ).save_to_disk(str(tmp_path / "hub"))  # fmt: skip
    data = load_labeled(str(tmp_path / "hub"))
    assert data.splits["test"]["text"] == [r["sentence"] for r in validation]
    assert "secret 0" not in [*data.splits["validation"]["text"], *data.splits["train"]["text"]]
    assert len(data.splits["train"]) + len(data.splits["validation"]) == 40
    assert "stands in as the test split" in data.description


def test_unlabeled_use_reads_a_label_only_when_named(tmp_path):
    # a column named like a label but holding other values is data when predicting
    path = write_csv(tmp_path / "d.csv", [{"text": "a fine film", "score": "7/10"}, {"text": "dull", "score": "2/10"}])
    data = load_labeled(str(path), labels=["negative", "positive"], need_labels=False, hold_out=False)
    assert data.splits["train"].column_names == ["text"]
    with pytest.raises(DataError, match="label '7/10' never occurs"):
        load_labeled(
            str(path), labels=["negative", "positive"], need_labels=False, hold_out=False, label_column="score"
        )
