"""`fmloop evaluate` with the trust checks: slices by a column of the data and by length, the
explained mistakes, the deletion test and the perturbation suite, in metrics.json and the report."""

import json

import pytest

from fmloop.core.errors import DataError
from fmloop.evaluate import evaluation
from fmloop.evaluate.config import EvaluateConfig
from tests.conftest import make_sentiment, write_csv


@pytest.fixture(scope="module")
def sliced_data(tmp_path_factory):
    rows = make_sentiment(120, seed=11)
    for i, row in enumerate(rows):
        row["source"] = "mobile" if i % 3 == 0 else "web"
    return write_csv(tmp_path_factory.mktemp("sliced") / "test.csv", rows)


def test_evaluate_reports_slices_explanations_faithfulness_and_robustness(text_run, sliced_data, tmp_path):
    cfg = EvaluateConfig(
        model=str(text_run), data=str(sliced_data), slices=["source"], robustness=True, faithfulness=30
    )
    run = evaluation.run(cfg, tmp_path / "eval")
    result = json.loads((run.path / "metrics.json").read_text())
    trust = result["trust"]
    assert set(trust["slices"]["columns"]) == {"source", "length (words)"}
    sizes = {r["name"]: r["n"] for r in trust["slices"]["columns"]["source"]["slices"]}
    assert sizes == {"mobile": 40, "web": 80}
    assert trust["faithfulness"]["n"] == 30 and trust["robustness"]["summary"]["clean_accuracy"] == pytest.approx(
        result["metrics"]["accuracy"]
    )
    report = (run.path / "report.html").read_text()
    for heading in ("Slices", "Faithfulness of the explanations", "Robustness"):
        assert f"<h2>{heading}" in report
    if trust.get("explanations"):  # the tiny model may make no mistake on these rows
        assert "<h2>Why it was wrong" in report and "background:rgba" in report


def test_a_slice_column_the_data_lacks_is_a_clear_error(text_run, sliced_data, tmp_path):
    cfg = EvaluateConfig(model=str(text_run), data=str(sliced_data), slices=["region"], faithfulness=0)
    with pytest.raises(DataError, match=r"no column 'region' to slice by \(columns: text, label, source\)"):
        evaluation.run(cfg, tmp_path / "eval")


def test_an_image_evaluation_explains_its_mistakes_once_and_runs_the_image_suite(image_run, image_dir, tmp_path):
    cfg = EvaluateConfig(model=str(image_run), data=str(image_dir), robustness=True)
    run = evaluation.run(cfg, tmp_path / "eval")
    trust = json.loads((run.path / "metrics.json").read_text())["trust"]
    assert len(trust["robustness"]["perturbations"]) == 15 and "slices" not in trust
    report = (run.path / "report.html").read_text()
    assert not ("<h2>Most confidently wrong" in report and "<h2>Why it was wrong" in report)
    assert ("explanations" in trust) == ("<h2>Why it was wrong" in report)
