"""The `embedding` strategy: a frozen encoder's normalised mean-pooled embeddings and a
cross-validated logistic regression, written as an ordinary mean-pooled fmloop model."""

import json

import numpy as np
import pytest
import torch

from fmloop.core.config import load_config
from fmloop.core.errors import ConfigError
from fmloop.models.loading import load
from fmloop.train.embedding import fit_logistic
from fmloop.train.finetune import FinetuneConfig
from fmloop.train.finetune import run as finetune
from tests.conftest import FAST, write_csv

TEXTS = ["my friend sees the river and it was great today", "the cat likes a long song and it was awful again"]


@pytest.mark.parametrize("n_classes", [2, 3])
def test_the_head_reproduces_the_fitted_regression(n_classes):
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(n_classes), 12)
    x = rng.normal(size=(len(y), 8)) + y[:, None] * 0.8
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    weight, bias, c, cv_accuracy = fit_logistic(x, y, n_classes, seed=0)
    reference = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(x, y)
    ours = torch.softmax(torch.from_numpy(x @ weight.T + bias).double(), -1).numpy()
    assert np.allclose(ours, reference.predict_proba(x), atol=1e-3)
    assert 0 <= cv_accuracy <= 1


def _embedding_run(base, data, out, strategy="embedding", **train):
    tree = {
        "model": {"name": str(base)},
        "data": {"path": str(data)},
        "strategy": strategy,
        "train": {**FAST, **train},
    }
    return finetune(load_config(FinetuneConfig, overrides=tree), out)


def test_an_embedding_run_is_an_ordinary_model_trained_on_every_label(tiny_base, sentiment_dir, tmp_path):
    run = _embedding_run(tiny_base, sentiment_dir, tmp_path / "run", limit_per_class=20)
    manifest = run.read_manifest()
    assert manifest["status"] == "finished" and manifest["strategy"] == "embedding"
    assert manifest["data_summary"]["rows"] == {"train": 44, "test": 60}  # a test split judges: validation trains too
    assert manifest["metrics"]["test_accuracy"] > 0.6, manifest["metrics"]  # a random tiny encoder; chance 0.5
    assert not any(k.startswith("validation_") for k in manifest["metrics"])  # it trained on validation
    config = json.loads((run.model_dir / "config.json").read_text())
    assert config["fmloop_pooling"] == "mean" and config["fmloop_normalize"] is True
    model = load(run.path)
    probabilities = [p["probabilities"] for p in model.predict(TEXTS)]
    assert all(abs(sum(p.values()) - 1) < 1e-5 for p in probabilities)
    assert manifest["metrics"]["test_accuracy"] == pytest.approx(
        float(
            np.mean(
                np.argmax(model.logits([r for r in _texts(sentiment_dir / "test.csv")]), -1)
                == _labels(sentiment_dir / "test.csv")
            )
        ),
        abs=1e-6,
    )  # what the run recorded is what the loaded model scores


def _texts(path):
    import csv

    return [row["text"] for row in csv.DictReader(open(path))]


def _labels(path):
    import csv

    return np.array([["negative", "positive"].index(row["label"]) for row in csv.DictReader(open(path))])


def test_embedding_refuses_what_it_cannot_fit(tiny_base, tmp_path):
    rows = [{"text": f"text {i}", "score": float(i)} for i in range(20)]
    data = write_csv(tmp_path / "r.csv", rows)
    with pytest.raises(ConfigError, match="takes task classification"):
        tree = {"model": {"name": str(tiny_base)}, "data": {"path": str(data)}, "strategy": "embedding",
                "task": "regression", "train": FAST}  # fmt: skip
        finetune(load_config(FinetuneConfig, overrides=tree), tmp_path / "out")


def test_pairs_are_same_and_other_class_partners():
    from fmloop.train.contrastive import sample_pairs

    y = np.array([0, 0, 0, 1, 1, 2])
    pairs = sample_pairs(y, iterations=3, seed=0)
    assert len(pairs) == 3 * 6 * 2
    same, other = pairs[pairs[:, 2] == 1], pairs[pairs[:, 2] == 0]
    assert (y[same[:, 0]] == y[same[:, 1]]).all() and (y[other[:, 0]] != y[other[:, 1]]).all()
    assert (same[:, 0] != same[:, 1])[y[same[:, 0]] != 2].all()  # a partner other than itself where one exists
    assert np.array_equal(pairs, sample_pairs(y, iterations=3, seed=0))


def test_contrastive_adapts_the_encoder_then_fits_the_head(tiny_base, sentiment_dir, tmp_path):
    run = _embedding_run(
        tiny_base, sentiment_dir, tmp_path / "run", strategy="contrastive", limit_per_class=20, pair_iterations=4
    )
    manifest = run.read_manifest()
    assert manifest["status"] == "finished" and manifest["strategy"] == "contrastive"
    assert manifest["metrics"]["steps"] > 0 and manifest["metrics"]["test_accuracy"] > 0.6, manifest["metrics"]
    assert not (run.path / "checkpoints").exists()
    base = load_file_weights(tiny_base)
    tuned = load_file_weights(run.model_dir)
    changed = [k for k in base if k in tuned and not torch.equal(base[k], tuned[k])]
    assert changed  # the body trained (the embedding strategy leaves it untouched)
    assert np.isfinite(load(run.path).logits(TEXTS)).all()


def load_file_weights(folder):
    from safetensors.torch import load_file

    return {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}


def test_a_stopped_contrastive_run_resumes_to_the_uninterrupted_result(tiny_base, sentiment_dir, tmp_path):
    import signal

    from fmloop.core import stop

    settings = dict(strategy="contrastive", limit_per_class=10, pair_iterations=2, checkpoint_every=2,
                    precision="fp32", deterministic=True)  # fmt: skip
    straight = _embedding_run(tiny_base, sentiment_dir, tmp_path / "straight", **settings)
    stop.request(signal.SIGTERM)  # as if SIGTERM arrived: the loop stops after its next step, at a checkpoint
    try:
        stopped = _embedding_run(tiny_base, sentiment_dir, tmp_path / "stopped", **settings)
    finally:
        stop.clear()
    assert stopped.read_manifest()["status"] == "stopped" and stopped.resumable()
    tree = {"model": {"name": str(tiny_base)}, "data": {"path": str(sentiment_dir)}, "strategy": "contrastive",
            "train": {**FAST, **{k: v for k, v in settings.items() if k != "strategy"}}}  # fmt: skip
    resumed = finetune(load_config(FinetuneConfig, overrides=tree), tmp_path / "stopped", resume=True)
    assert resumed.read_manifest()["status"] == "finished"
    assert resumed.read_manifest()["metrics"]["steps"] == straight.read_manifest()["metrics"]["steps"]
    a, b = load_file_weights(straight.model_dir), load_file_weights(resumed.model_dir)
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
