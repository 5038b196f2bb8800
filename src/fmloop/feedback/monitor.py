"""`fmloop drift NAME`: the champion's recent served inputs against its training data.

The reference is a seeded sample of the champion's training texts; the current sample is the
newest texts the server answered with that model. Both go through the champion: its mean-pooled
encoder states are the embeddings (its probabilities, for models without an encoder fmloop can
reach, such as ONNX), its predictions the labels, its top probability the confidence. The result
is written as JSON and an HTML report with plots, and kept in the fmloop home, where a running
server reads it for its /metrics gauges.
"""

from __future__ import annotations

import html
import random
from pathlib import Path

import numpy as np
import torch
from sqlalchemy import select

from fmloop.core.artifacts import atomic_write_json, atomic_write_text
from fmloop.core.errors import FmloopError
from fmloop.core.html import CSS, figure_to_data_uri
from fmloop.data.labeled import load_labeled
from fmloop.feedback.drift import confidence_test, label_test, latest_path, mmd_test
from fmloop.feedback.schema import ERASED, Prediction
from fmloop.feedback.store import Store
from fmloop.models.inference import TextModel, batched_by_length, encode_texts
from fmloop.models.loading import load
from fmloop.models.pooled import mean_pool
from fmloop.registry import models as registry
from fmloop.registry.recipe import training_recipe
from fmloop.tasks import get_task


@torch.no_grad()
def embed(model, texts: list[str]) -> np.ndarray:
    """Mean-pooled encoder states of a PyTorch text model; its probabilities otherwise."""
    if not isinstance(model, TextModel):
        return get_task(model.task).probabilities(model.logits(texts))
    encoder = getattr(model.model, model.model.base_model_prefix, model.model)

    def run(batch: list[str]) -> np.ndarray:
        enc = {
            k: torch.from_numpy(v).to(model.device)
            for k, v in encode_texts(model.tokenizer, batch, model.reading).items()
        }
        hidden = encoder(**enc).last_hidden_state
        return mean_pool(hidden.float(), enc["attention_mask"]).cpu().numpy()

    return batched_by_length(texts, run, 64)


def recent_inputs(store: Store, name: str, n: int) -> list[str]:
    with store.session() as session:
        rows = session.scalars(
            select(Prediction.input)
            .where(Prediction.model_name == name, Prediction.input_kind == "text", Prediction.input != ERASED)
            .order_by(Prediction.created_at.desc())
            .limit(n)
        )
        return list(rows)


def check(name: str, database: str | None = None, n: int = 300, alpha: float = 0.01, seed: int = 0) -> dict:
    champion = registry.get(f"models:/{name}@{registry.CHAMPION}")
    _, data_path = training_recipe(champion)
    store = Store.open(database)
    current = recent_inputs(store, champion.name, n)
    if len(current) < 30:
        raise FmloopError(
            f"{len(current)} served text inputs of {champion.name} in the store: drift needs at least 30."
        )
    train = load_labeled(data_path, labels=champion.labels, hold_out=False).splits["train"]["text"]
    reference = random.Random(seed).sample(list(train), min(len(train), len(current)))
    model = load(champion.reference, device="cpu")
    task = get_task(model.task)
    probs_ref, probs_cur = (task.probabilities(model.logits(t)) for t in (reference, current))
    tests = [
        mmd_test(embed(model, reference), embed(model, current), alpha=alpha, seed=seed),
        confidence_test(probs_ref.max(-1), probs_cur.max(-1), alpha=alpha),
    ]
    if task.has_classes and model.labels:
        names = lambda p: [model.labels[i] for i in p.argmax(-1)]  # noqa: E731
        tests.insert(1, label_test(names(probs_ref), names(probs_cur), model.labels, alpha=alpha))
    result = {
        "model": champion.reference,
        "n": {"reference": len(reference), "current": len(current)},
        "alpha": alpha,
        "drifted": any(t.drifted for t in tests),
        "tests": [t.to_dict() for t in tests],
        "confidence": {"reference": probs_ref.max(-1).tolist(), "current": probs_cur.max(-1).tolist()},
    }
    return result


def write(result: dict, out: Path, name: str) -> None:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in result.items() if k != "confidence"}
    atomic_write_json(out / "drift.json", summary)
    atomic_write_json(latest_path(name), summary)  # what servers read for /metrics
    fig, ax = plt.subplots(figsize=(6, 3))
    bins = np.linspace(0, 1, 21)
    ax.hist(result["confidence"]["reference"], bins, alpha=0.6, label="training data", density=True)
    ax.hist(result["confidence"]["current"], bins, alpha=0.6, label="served recently", density=True)
    ax.set_xlabel("top-class probability")
    ax.legend()
    uri = figure_to_data_uri(fig)
    plt.close(fig)
    rows = "".join(
        f"<tr><td>{html.escape(t['name'])}</td><td>{t['statistic']:.4g}</td><td>{t['p_value']:.3g}</td>"
        f"<td>{'DRIFT' if t['drifted'] else 'ok'}</td></tr>"
        for t in result["tests"]
    )
    atomic_write_text(
        out / "report.html",
        f"<!doctype html><meta charset='utf-8'><title>drift {html.escape(name)}</title><style>{CSS}</style>"
        f"<h1>Drift of {html.escape(result['model'])}</h1><p>{result['n']['current']} recent served inputs "
        f"against {result['n']['reference']} training texts; alpha {result['alpha']:g}.</p>"
        f"<table><tr><th>test</th><th>statistic</th><th>p-value</th><th></th></tr>{rows}</table>"
        f"<img src='{uri}' alt='confidence distributions'>",
    )
