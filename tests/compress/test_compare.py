"""The trade-off report: every model scored and timed, each compressed model against its parent."""

import json

from tests.conftest import run_cli


def test_compare_models_writes_table_and_plot(text_run, sentiment_dir, tmp_path):
    student = tmp_path / "student"
    result = run_cli(
        "distill",
        "--teacher",
        str(text_run),
        "--student",
        "bert-tiny",
        "--data",
        str(sentiment_dir),
        "--out",
        str(student),
        "--train.epochs=2",
        "--train.tensorboard=false",
        "--train.threads=1",
    )
    assert result.returncode == 0, result.stderr
    result = run_cli("quantize", str(text_run), "--backend", "torch", "--out", str(tmp_path / "int8"))
    assert result.returncode == 0, result.stderr
    out = tmp_path / "cmp"
    result = run_cli(
        "compare-models",
        str(text_run),
        str(tmp_path / "int8"),
        str(student),
        "--data",
        str(sentiment_dir),
        "--out",
        str(out),
        "--latency-samples",
        "10",
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads((out / "compare.json").read_text())["rows"]
    assert [r["kind"] for r in rows] == ["TextModel", "TextModel", "TextModel"]
    parent, int8, small = rows
    assert int8["vs_parent"]["model"] == str(text_run) and small["vs_parent"]["model"] == str(text_run)
    from fmloop.models.loading import load

    assert small["parameters"] == sum(p.numel() for p in load(student).model.parameters())
    assert int8["parameters"] == parent["parameters"] and int8["size_mb"] < parent["size_mb"]
    for r in rows:
        assert 0 <= r["value"] <= 1 and r["interval_95"][0] <= r["value"] <= r["interval_95"][1]
        assert r["latency_p95_ms"] >= r["latency_p50_ms"] > 0 and r["throughput_b32_per_s"] > 0
    assert (out / "compare.png").stat().st_size > 1000
    table = (out / "compare.md").read_text()
    assert table.count("\n") == 2 + len(rows) and "vs " in table
