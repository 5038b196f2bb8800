"""Active learning and annotation round trips: `fmloop label suggest` and `fmloop label import`.

suggest: a fine-tuned model scores an unlabeled pool and picks the next `n` rows worth labeling:

    entropy   highest predictive entropy
    margin    smallest gap between the two most likely classes
    kcenter   k-center greedy on the model's penultimate features (the classifier's input): each
              pick is the pool row farthest from everything labeled or picked so far (coverage)
    hybrid    the 3n smallest-margin rows, then k-center among them (uncertain and diverse)
    random    a seeded sample (the baseline every strategy must beat)

and writes them as Label Studio tasks (tasks.json, with the model's guess as a prediction),
tasks.csv, and label_config.xml (the labeling interface with the model's classes).

import: completed annotations (a Label Studio JSON export, or a CSV with id/text/label) are merged
into a labeled dataset as new training rows. Tasks annotated with different labels, labels outside
the dataset's classes, texts already labeled differently, and ids that are not in the suggested
tasks are reported in conflicts.jsonl and left out; the inputs are never modified.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from fmloop.core.artifacts import new_folder, require_new_folder
from fmloop.core.errors import ConfigError, DataError
from fmloop.data.labeled import TEXT_CANDIDATES, _choose, load_labeled
from fmloop.data.sources import read_splits
from fmloop.models.loading import load
from fmloop.tasks.metrics import softmax
from fmloop.tasks.tokens import entity_types

log = logging.getLogger(__name__)

STRATEGIES = ("entropy", "margin", "kcenter", "hybrid", "random")


def penultimate_features(model, texts: list[str], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """(logits, features): the features are what the classification layer reads (pooled states)."""
    import torch

    head = getattr(getattr(model, "model", None), "classifier", None)
    if head is None or not isinstance(head, torch.nn.Linear):
        raise ConfigError(
            f"{type(model).__name__} has no linear `classifier` layer to read features from; "
            f"use --strategy entropy or margin."
        )
    captured = []
    handle = head.register_forward_pre_hook(lambda module, args: captured.append(args[0].detach().float()))
    try:
        logits = model.logits(texts, batch_size)
    finally:
        handle.remove()
    # model.logits runs length-sorted batches: put the captured rows back in input order.
    order = np.argsort([len(t) for t in texts], kind="stable")
    feats = np.zeros((len(texts), captured[0].shape[-1]), np.float32)
    feats[order] = torch.cat(captured).numpy()
    return logits, feats


def k_center_greedy(features: np.ndarray, n: int, start: np.ndarray | None = None, seed: int = 0) -> list[int]:
    """Greedy farthest-point selection (Sener & Savarese 2018) from `features` (N, D)."""
    if start is not None and len(start):
        # squared distance to the nearest already-labeled point, |f|^2 + |s|^2 - 2 f.s, in chunks
        ss = (start**2).sum(-1)
        dist = np.concatenate(
            [
                np.maximum(0, ((chunk**2).sum(-1)[:, None] + ss[None, :] - 2 * chunk @ start.T).min(1))
                for chunk in np.array_split(features, max(1, len(features) // 1024))
            ]
        )
        picks = []
    else:
        first = int(np.random.default_rng(seed).integers(len(features)))
        picks = [first]
        dist = ((features - features[first]) ** 2).sum(-1)
    dist = np.nan_to_num(dist, nan=0.0)
    dist[picks] = -np.inf
    while len(picks) < min(n, len(features)):
        nxt = int(dist.argmax())
        picks.append(nxt)
        dist = np.minimum(dist, np.nan_to_num(((features - features[nxt]) ** 2).sum(-1), nan=0.0))
        dist[nxt] = -np.inf  # never twice, even when every distance is zero (identical features)
    return picks


def choose(
    strategy: str,
    probs: np.ndarray,
    feats: np.ndarray | None,
    n: int,
    labeled_feats: np.ndarray | None = None,
    seed: int = 0,
) -> list[int]:
    """Indices (into the pool) of the `n` rows to label next, best first."""
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"The 'strategy' parameter of label suggest must be one of {', '.join(STRATEGIES)}. "
            f"Got {strategy!r} instead."
        )
    n = min(n, len(probs))
    if strategy == "random":
        return np.random.default_rng(seed).permutation(len(probs))[:n].tolist()
    top2 = np.sort(probs, axis=1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    if strategy == "entropy":
        return np.argsort(-(-(probs * np.log(np.clip(probs, 1e-12, 1))).sum(1)), kind="stable")[:n].tolist()
    if strategy == "margin":
        return np.argsort(margin, kind="stable")[:n].tolist()
    if strategy == "kcenter":
        return k_center_greedy(feats, n, labeled_feats, seed)
    shortlist = np.argsort(margin, kind="stable")[: 3 * n]
    return [int(shortlist[i]) for i in k_center_greedy(feats[shortlist], n, labeled_feats, seed)]


def suggest(
    model_path: str,
    pool: str,
    out: str | Path,
    *,
    n: int = 100,
    strategy: str = "margin",
    labeled: str | None = None,
    text_column: str | None = None,
    seed: int = 0,
) -> dict:

    if n < 1:
        raise ConfigError(f"The 'n' parameter of label suggest must be >= 1. Got {n} instead.")
    require_new_folder(out)
    model = load(model_path)
    if model.task != "classification" or model.modality != "text":
        raise ConfigError("label suggest works with text classification models.")
    raw = read_splits(pool)
    texts = []
    for split, ds in raw.splits.items():
        col = _choose(ds.column_names, text_column, TEXT_CANDIDATES, "text", raw.origin[split], "--text-column")
        texts += [str(t) for t in ds[col] if t is not None and str(t).strip()]
    if not texts:
        raise DataError(f"{pool} holds no text to choose from.")
    needs_features = strategy in ("kcenter", "hybrid")
    logits, feats = penultimate_features(model, texts) if needs_features else (model.logits(texts), None)
    labeled_feats = None
    if needs_features and labeled:
        known = load_labeled(labeled, labels=model.labels, hold_out=False)
        _, labeled_feats = penultimate_features(model, list(known.splits["train"]["text"]))
    probs = softmax(logits)
    picks = choose(strategy, probs, feats, n, labeled_feats, seed)
    with new_folder(out) as tmp:
        tasks = []
        for rank, i in enumerate(picks):
            guess = model.labels[int(probs[i].argmax())]
            tasks.append(
                {
                    "id": rank + 1,
                    "data": {"text": texts[i]},
                    "predictions": [
                        {
                            "model_version": str(model.folder),
                            "score": round(float(probs[i].max()), 4),
                            "result": [
                                {
                                    "from_name": "label",
                                    "to_name": "text",
                                    "type": "choices",
                                    "value": {"choices": [guess]},
                                }
                            ],
                        }
                    ],
                }
            )
        (tmp / "tasks.json").write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
        import csv

        with open(tmp / "tasks.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["id", "text", "suggested", "confidence", "label"])
            for t in tasks:
                p = t["predictions"][0]
                w.writerow([t["id"], t["data"]["text"], p["result"][0]["value"]["choices"][0], p["score"], ""])
        (tmp / "label_config.xml").write_text(label_studio_config(model.labels))
        summary = {
            "model": str(model_path),
            "pool": str(pool),
            "pool_size": len(texts),
            "n": len(tasks),
            "strategy": strategy,
            "labels": model.labels,
        }
        (tmp / "suggest.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def label_studio_config(labels: list[str]) -> str:
    """Label Studio's labelling interface for single-choice text classification over `labels`."""
    choices = "".join(f'    <Choice value="{escape(name)}"/>\n' for name in labels)
    return (
        f'<View>\n  <Text name="text" value="$text"/>\n  <Choices name="label" '
        f'toName="text" choice="single">\n{choices}  </Choices>\n</View>\n'
    )


def label_studio_ner_config(labels: list[str]) -> str:
    """Label Studio's labelling interface for marking the entities of a tagger's tags (`labels`)."""
    kinds = "".join(f'    <Label value="{escape(kind)}"/>\n' for kind in entity_types(labels))
    return (
        f'<View>\n  <Labels name="label" toName="text">\n{kinds}  </Labels>\n'
        f'  <Text name="text" value="$text"/>\n</View>\n'
    )


# Import ---------------------------------------------------------------------------------------------


def read_annotations(path: str, spans: bool = False) -> list[dict]:
    """[{"id", "text", "labels": [...], "entities": [...], "data": {...}}] from a Label Studio JSON
    export or a CSV (id, text, label; its other columns are the data). `entities`: per annotation,
    its marked spans as sorted (type, start, end); with `spans`, every annotated task is a row (no
    span marked is an answer: the text has no entity)."""
    file = Path(path)
    if not file.exists():
        raise DataError(f"{path} does not exist.")
    if spans and file.suffix.lower() == ".csv":
        raise DataError(f"{path}: entity spans are read from Label Studio's JSON export, not a CSV.")
    if file.suffix.lower() == ".csv":
        import csv

        rows = []
        with open(file, newline="") as fh:
            for line, row in enumerate(csv.DictReader(fh), start=2):
                if "text" not in row or "label" not in row:
                    raise DataError(f"{path}: needs columns text and label (and id); has {', '.join(row)}.")
                if (row.get("label") or "").strip():
                    rows.append(
                        {
                            "id": row.get("id") or f"line {line}",
                            "text": row["text"],
                            "labels": [row["label"].strip()],
                            "where": f"{path}, line {line}",
                            "data": row,
                        }
                    )
        return rows
    try:
        tasks = json.loads(file.read_text())
    except json.JSONDecodeError as err:
        raise DataError(
            f"{path} is not valid JSON (line {err.lineno}): export annotations from Label Studio "
            f"as JSON, or pass a CSV with id,text,label columns."
        ) from None
    rows = []
    for k, task in enumerate(tasks if isinstance(tasks, list) else [tasks]):
        text = (task.get("data") or {}).get("text")
        if text is None:
            raise DataError(f"{path}: task {task.get('id', k)} has no data.text.")
        labels, marked = [], []
        for ann in task.get("annotations") or task.get("completions") or []:
            if ann.get("was_cancelled"):
                continue
            found = []
            for result in ann.get("result") or []:
                value = result.get("value") or {}
                labels += value.get("choices") or []
                if "start" in value and "end" in value:
                    found += [(kind, int(value["start"]), int(value["end"])) for kind in value.get("labels") or []]
            marked.append(sorted(found))
        if labels or (spans and marked):
            rows.append(
                {
                    "id": task.get("id", k + 1),
                    "text": text,
                    "labels": labels,
                    "entities": marked,
                    "where": f"{path}, task {task.get('id', k + 1)}",
                    "data": task.get("data") or {},
                }
            )
    return rows


def import_annotations(annotations: str, out: str | Path, *, into: str | None = None, tasks: str | None = None) -> dict:
    """New dataset in OUT: `into`'s splits (if given) plus the annotated rows added to train."""
    from datasets import Dataset

    require_new_folder(out)
    rows = read_annotations(annotations)
    known_ids = None
    if tasks:
        known_ids = {str(t["id"]) for t in json.loads(Path(tasks).read_text())}
    splits: dict[str, dict[str, list]] = {}
    labels: list[str] | None = None
    if into:
        data = load_labeled(into, hold_out=False)
        labels = data.labels
        splits = {
            name: {"text": list(ds["text"]), "label": [labels[v] for v in ds["label"]]}
            for name, ds in data.splits.items()
        }
    existing = {t: l for t, l in zip(splits.get("train", {}).get("text", []), splits.get("train", {}).get("label", []))}
    conflicts, added = [], []
    for row in rows:
        votes = Counter(row["labels"])
        reason = None
        if known_ids is not None and str(row["id"]) not in known_ids:
            reason = f"task id {row['id']} is not in {tasks}"
        elif len(votes) > 1:
            reason = f"annotators disagree: {dict(votes)}"
        elif labels is not None and row["labels"][0] not in labels:
            reason = f"label {row['labels'][0]!r} is not one of {labels}"
        elif row["text"] in existing and existing[row["text"]] != row["labels"][0]:
            reason = f"already labeled {existing[row['text']]!r}"
        if reason:
            conflicts.append({"id": row["id"], "where": row["where"], "text": row["text"], "reason": reason})
        elif row["text"] not in existing:
            added.append(row)
            existing[row["text"]] = row["labels"][0]
    if not added and not splits:
        raise DataError(f"{annotations} has no usable annotations ({len(conflicts)} conflicts).")
    train = splits.setdefault("train", {"text": [], "label": []})
    train["text"] += [r["text"] for r in added]
    train["label"] += [r["labels"][0] for r in added]
    with new_folder(out) as tmp:
        for name, cols in splits.items():
            Dataset.from_dict(cols).to_parquet(str(tmp / f"{name}.parquet"))
        with open(tmp / "conflicts.jsonl", "w") as fh:
            for c in conflicts:
                fh.write(json.dumps(c, ensure_ascii=False) + "\n")
        summary = {
            "annotations": str(annotations),
            "into": into,
            "annotated": len(rows),
            "added": len(added),
            "conflicts": len(conflicts),
            "train_rows": len(train["text"]),
        }
        (tmp / "import.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
