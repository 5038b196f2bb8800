"""A registered version is an MLflow model: MLflow's python_function flavour over fmloop's loader.

`fmloop register` writes an MLmodel file beside the model's files in the registry, naming this
module as the flavour's loader (MLflow imports it and calls `_load_pyfunc`; nothing is pickled).
So MLflow's own tools read fmloop's versions:

    model = mlflow.pyfunc.load_model("models:/sst2@champion")
    model.predict(["a gripping film", "two hours I will not get back"])   # a DataFrame, one row per input
    mlflow models serve -m models:/sst2@champion --env-manager local      # POST /invocations

Inputs: a list of texts (or image paths), a pandas Series of them, or a DataFrame whose `text`
(`image`) column, else first column, holds them. Output: a DataFrame with `label` and one
`probability_<label>` column per class (multi-label: `labels`; regression: `score`), the answers
`fmloop.load(...).predict` gives.
"""

from __future__ import annotations

from pathlib import Path

LOADER = "fmloop.registry.pyfunc"
MLMODEL = "MLmodel"


class FmloopPyfunc:
    """What `mlflow.pyfunc.load_model` returns inside its PyFuncModel wrapper."""

    def __init__(self, model):
        self.model = model

    def predict(self, model_input, params=None):
        import pandas as pd

        inputs = _inputs(model_input, "image" if self.model.modality == "image" else "text")
        rows = []
        for answer in self.model.predict(inputs):
            row = {k: v for k, v in answer.items() if k != "probabilities"}
            for label, p in (answer.get("probabilities") or {}).items():
                row[f"probability_{label}"] = p
            rows.append(row)
        return pd.DataFrame(rows)


def _inputs(model_input, column: str) -> list:
    import pandas as pd

    if isinstance(model_input, pd.DataFrame):
        series = model_input[column] if column in model_input.columns else model_input.iloc[:, 0]
        return [str(v) for v in series.tolist()]
    if isinstance(model_input, pd.Series):
        return [str(v) for v in model_input.tolist()]
    if isinstance(model_input, str):
        return [model_input]
    return [str(v) for v in model_input]


def _load_pyfunc(data_path: str) -> FmloopPyfunc:
    """MLflow's entry point: the model folder the version's artifacts were downloaded to."""
    from fmloop.models.loading import load

    return FmloopPyfunc(load(Path(data_path), device="cpu"))


def write_mlmodel(folder: Path, run_id: str, artifact_path: str = "model") -> Path:
    """An MLmodel file in `folder` describing a model folder as a python_function model."""
    import mlflow.pyfunc
    from mlflow.models import Model

    from fmloop.core.version import __version__

    model = Model(artifact_path=artifact_path, run_id=run_id)
    mlflow.pyfunc.add_to_model(model, loader_module=LOADER, data=".")
    model.metadata = {"fmloop_version": __version__}
    path = Path(folder) / MLMODEL
    model.save(str(path))
    return path
