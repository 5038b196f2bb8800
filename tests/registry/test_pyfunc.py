"""A registered version is an MLflow model: MLflow's own loader reads it by alias and predicts what
fmloop predicts, with nothing unpickled."""

import shutil

import pandas as pd
import pytest

from fmloop.models.loading import load
from fmloop.registry import models

TEXTS = ["my friend sees the river and it was great today", "the cat likes a long song and it was awful again"]


def test_mlflow_pyfunc_loads_a_version_by_alias_and_predicts_as_fmloop_does(home, text_run, tmp_path):
    import mlflow.pyfunc

    from fmloop.core.home import tracking_uri

    run = tmp_path / "run"
    shutil.copytree(text_run, run)  # registering writes to the run's manifest: not the shared fixture's
    models.register(run, "sst2")
    models.promote("sst2", 1)
    mlflow.set_tracking_uri(tracking_uri())
    model = mlflow.pyfunc.load_model("models:/sst2@champion")
    assert model.metadata.flavors["python_function"]["loader_module"] == "fmloop.registry.pyfunc"
    got = model.predict(pd.DataFrame({"text": TEXTS}))
    expected = load(text_run).predict(TEXTS)
    assert got["label"].tolist() == [e["label"] for e in expected]
    for row, e in zip(got.to_dict("records"), expected):
        assert row["probability_positive"] == pytest.approx(e["probabilities"]["positive"], abs=1e-6)
    assert model.predict(TEXTS)["label"].tolist() == got["label"].tolist()  # a plain list works too
