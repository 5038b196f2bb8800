"""finetune -> evaluate (with a baseline) -> predict, through the command line."""

import json

import pytest

from tests.conftest import run_cli, write_csv

pytestmark = pytest.mark.slow


def test_finetune_evaluate_predict(tiny_base, sentiment_dir, tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        "finetune",
        "--model",
        str(tiny_base),
        "--data",
        str(sentiment_dir),
        "--out",
        str(run),
        "--train.lr=3e-3",
        "--train.epochs=8",
        "--train.early_stopping_patience=null",
        "--train.threads=1",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "test_accuracy" in result.stderr and (run / "report.html").exists()

    out = tmp_path / "eval"
    result = run_cli(
        "evaluate", str(run / "model"), str(sentiment_dir / "test.csv"), "--baseline", str(tiny_base), "--out", str(out)
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr  # the untrained base has no task head labels
    result = run_cli("evaluate", str(run / "model"), str(sentiment_dir / "test.csv"), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n"] == 60 and metrics["metrics"]["accuracy"] > 0.9 and "accuracy" in metrics["intervals_95"]
    assert "accuracy" in result.stdout

    texts = tmp_path / "texts.txt"
    texts.write_text(
        "my friend sees the river and it was great today\nthe cat likes a long song and it was awful again\n"
    )
    preds = tmp_path / "preds.jsonl"
    result = run_cli("predict", str(run), str(texts), "--out", str(preds))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [r["label"] for r in rows] == ["positive", "negative"]
    assert set(rows[0]["probabilities"]) == {"negative", "positive"}


def test_evaluate_with_baseline_runs_a_paired_test(tiny_base, sentiment_dir, tmp_path):
    for name, epochs in (("strong", 8), ("weak", 1)):
        result = run_cli(
            "finetune",
            "--model",
            str(tiny_base),
            "--data",
            str(sentiment_dir),
            "--out",
            str(tmp_path / name),
            "--train.lr=3e-3",
            f"--train.epochs={epochs}",
            "--train.early_stopping_patience=null",
        )
        assert result.returncode == 0, result.stderr[-3000:]
    result = run_cli(
        "evaluate",
        str(tmp_path / "strong"),
        str(sentiment_dir),
        "--baseline",
        str(tmp_path / "weak"),
        "--out",
        str(tmp_path / "cmp"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "paired bootstrap on accuracy" in result.stdout
    comparison = json.loads((tmp_path / "cmp" / "metrics.json").read_text())["comparison"]
    assert comparison["test"]["difference"] > 0 and comparison["test"]["p_value"] < 0.05
    assert "Against the baseline" in (tmp_path / "cmp" / "report.html").read_text()


def test_bad_labels_are_one_line_errors(tiny_base, sentiment_dir, tmp_path):
    write_csv(tmp_path / "train.csv", [{"text": "a b", "label": "x"}, {"text": "c", "label": "y"}])
    write_csv(tmp_path / "validation.csv", [{"text": "d", "label": "q"}])
    result = run_cli("finetune", "--model", str(tiny_base), "--data", str(tmp_path), "--out", str(tmp_path / "run"))
    assert result.returncode == 3 and "Traceback" not in result.stderr
    assert "validation.csv, row 1: label 'q' never occurs" in result.stderr.replace("\n", " ")
    result = run_cli("finetune", "--model", str(tmp_path), "--data", str(sentiment_dir), "--out", str(tmp_path / "run"))
    assert result.returncode == 4 and "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()
