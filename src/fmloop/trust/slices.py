"""Is the model as good for every group of inputs? Per-slice metrics with intervals.

Slices come from columns of the data (`--slices region,device`) and from the inputs themselves:
length (word-count quartiles) and, for text, language (py3langid, as data cleaning detects it),
kept only where the data has more than one. fairlearn's MetricFrame computes each slice's metric,
the worst slice and the largest gap between two slices of a column; the 95% intervals are
bootstrap intervals within each slice. Slices under MIN_ROWS rows are listed but never named
worst: their metric is mostly noise.
"""

from __future__ import annotations

import numpy as np

from fmloop.tasks import get_task
from fmloop.tasks.bootstrap import mean_interval

MIN_ROWS = 20
LENGTH = "length (words)"
LANGUAGE = "language"


def length_buckets(texts: list[str]) -> list[str]:
    """Each text's word-count quartile, named by its range ('1-8', '9-14', ...)."""
    counts = np.array([len(t.split()) for t in texts])
    edges = np.unique(np.quantile(counts, [0, 0.25, 0.5, 0.75, 1.0]).round().astype(int))
    if len(edges) < 2:
        return [f"{counts[0]}"] * len(texts) if len(texts) else []
    which = np.clip(np.searchsorted(edges, counts, side="left") - 1, 0, len(edges) - 2)
    which[counts <= edges[0]] = 0
    names = [f"{edges[0] if i == 0 else edges[i] + 1}-{edges[i + 1]}" for i in range(len(edges) - 1)]
    return [names[i] for i in which]


def languages(texts: list[str]) -> list[str]:
    from fmloop.data.cleaning import detect_language

    return [detect_language(t) for t in texts]


def automatic_slices(texts: list[str] | None, n: int) -> dict[str, list[str]]:
    """Length buckets and languages for texts (those with more than one value)."""
    if not texts:
        return {}
    out = {LENGTH: length_buckets(texts)}
    langs = languages(texts)
    # short texts get the odd spurious guess (SST-2: ten one-sentence "languages" besides English):
    # languages under MIN_ROWS rows are pooled as "other"
    counts = {lang: langs.count(lang) for lang in set(langs)}
    langs = [lang if counts[lang] >= MIN_ROWS else "other" for lang in langs]
    if len(set(langs)) > 1:
        out[LANGUAGE] = langs
    return out


def _score(task: str, y: np.ndarray, logits: np.ndarray) -> tuple[str, np.ndarray]:
    """The task's per-example score the slices compare: correct (1/0) for classification and
    multi-label (exact match), negative absolute error for regression."""
    t = get_task(task)
    if task == "regression":
        return "negative absolute error", -np.abs(logits[:, 0] - y)
    if task == "multilabel":
        return "exact match", (((t.probabilities(logits) >= 0.5).astype(int) == y).all(1)).astype(float)
    return "accuracy", (logits.argmax(-1) == y).astype(float)


def slice_metrics(task: str, y: np.ndarray, logits: np.ndarray, slices: dict[str, list[str]], seed: int = 0) -> dict:
    """{metric, columns: {column: {slices: [{name, n, value, interval_95}], worst, gap}}, worst}."""
    from fairlearn.metrics import MetricFrame

    metric, per_example = _score(task, y, logits)
    rng = np.random.default_rng(seed)
    columns = {}
    for column, values in slices.items():
        values = np.asarray(values, dtype=object)
        frame = MetricFrame(
            metrics={"value": lambda yt, yp: float(np.mean(yp)), "n": lambda yt, yp: len(yp)},
            y_true=np.zeros(len(values)),
            y_pred=per_example,
            sensitive_features=values,
        )
        table = frame.by_group
        rows = []
        for name in table.index:
            members = per_example[values == name]
            rows.append(
                {
                    "name": str(name),
                    "n": int(table.loc[name, "n"]),
                    "value": round(float(table.loc[name, "value"]), 6),
                    "interval_95": mean_interval(members, rng),
                }
            )
        rows.sort(key=lambda r: r["value"])
        sized = [r for r in rows if r["n"] >= MIN_ROWS]
        columns[column] = {
            "slices": rows,
            "worst": sized[0]["name"] if sized else None,
            "gap": round(sized[-1]["value"] - sized[0]["value"], 6) if len(sized) > 1 else None,
        }
    worst = min(
        ({"column": c, **r} for c, col in columns.items() for r in col["slices"] if r["name"] == col["worst"]),
        key=lambda r: r["value"],
        default=None,
    )
    return {"metric": metric, "overall": round(float(per_example.mean()), 6), "columns": columns, "worst": worst}


def worst_slice_values(
    task: str, y: np.ndarray, logits: np.ndarray, slices: dict[str, list[str]], min_rows: int = MIN_ROWS
) -> dict:
    """{(column, slice): value} for slices of at least `min_rows` rows: what the gate compares
    between two models scored on the same rows."""
    _, per_example = _score(task, y, logits)
    out = {}
    for column, values in slices.items():
        values = np.asarray(values, dtype=object)
        for name in np.unique(values):
            members = values == name
            if members.sum() >= min_rows:
                out[(column, str(name))] = float(per_example[members].mean())
    return out
