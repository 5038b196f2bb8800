"""`fmloop data label-issues DATA [--model BASE]`: which labels are probably wrong.

Confident learning (Northcutt et al. 2021, via cleanlab) needs out-of-sample class probabilities
for every example: a fast model is trained K times, each time predicting the fold it did not see.
The fast model is logistic regression on TF-IDF of words and word pairs, averaged with a second
one on mean-pooled token states of a base model when `--model` names one (any local Hugging Face
encoder folder or fmloop run). cleanlab then flags the examples whose given label is unlikely given
those probabilities and the estimated noise between classes, ranked by how confident the
model is that the label is wrong; the suggested label is the model's top class.

With `--finetune`, K fine-tuning runs of `--model` itself (fmloop finetune's defaults, the
dataset's own validation split for early stopping when it has one) join the average as a third
member: K times the cost, but a member as accurate as the final model. The fast models still
count: they err on different rows, so a hard but correctly labeled sentence that one of them
gets wrong keeps a middling average, while a flipped easy one is wrong for all three (on SST-2
with 10% flipped labels the average beats the fine-tuned probabilities alone; docs/benchmarks.md).

`--drop` or `--relabel` write a new dataset (OUT/<split>.parquet for every split, the checked
split changed) and OUT/changes.jsonl; the input is never modified.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np

from fmloop.core.artifacts import new_folder, require_new_folder
from fmloop.core.config import build_config, deep_merge
from fmloop.core.console import err_console
from fmloop.core.errors import ConfigError, DataError
from fmloop.data.labeled import load_labeled
from fmloop.data.tokenizer import load_tokenizer
from fmloop.models.loading import load
from fmloop.models.pooled import mean_pool
from fmloop.models.presets import model_dir_of
from fmloop.tasks.metrics import softmax
from fmloop.train.finetune import FinetuneConfig
from fmloop.train.finetune import run as finetune

log = logging.getLogger(__name__)


def embed(texts: list[str], model_path: str, batch_size: int = 64, max_length: int = 256, progress=None) -> np.ndarray:
    """Mean-pooled, L2-normalised last hidden states of a base model: (N, H)."""
    import torch
    from transformers import AutoModel

    folder = model_dir_of(model_path)
    tokenizer = load_tokenizer(folder)
    model = AutoModel.from_pretrained(str(folder)).eval()
    torch.set_grad_enabled(False)
    order = np.argsort([len(t) for t in texts], kind="stable")
    out = np.zeros((len(texts), model.config.hidden_size), np.float32)
    for start in range(0, len(texts), batch_size):
        idx = order[start : start + batch_size]
        enc = tokenizer(
            [texts[i] for i in idx], truncation=True, max_length=max_length, padding=True, return_tensors="pt"
        )
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
        pooled = mean_pool(hidden, enc["attention_mask"])
        out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        if progress is not None:
            progress(len(idx))
    torch.set_grad_enabled(True)
    return out


def feature_sets(texts: list[str], model_path: str | None, progress=None) -> list:
    """TF-IDF of words and word pairs, plus the base model's embeddings when one is given: each
    set gets its own classifier and their probabilities are averaged (on SST-2 the pair is more
    accurate out of sample than either alone, and flags fewer correct labels)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    sets = [TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True).fit_transform(texts)]
    if model_path:
        sets.append(embed(texts, model_path, progress=progress))
    return sets


def out_of_sample_probabilities(X, y: np.ndarray, n_classes: int, folds: int = 5, seed: int = 0) -> np.ndarray:
    """(N, K) class probabilities, each row predicted by a model that never saw it."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    _check_fold_sizes(y, n_classes, folds)
    probs = np.zeros((len(y), n_classes))
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y):
        clf = LogisticRegression(max_iter=2000, C=2.0)
        clf.fit(X[train], y[train])
        probs[np.ix_(held, clf.classes_)] = clf.predict_proba(X[held])
    return probs


def finetuned_out_of_sample_probabilities(
    data, split: str, model: str, folds: int = 5, seed: int = 0, overrides: dict | None = None
) -> np.ndarray:
    """(N, K) class probabilities of `split`, each row predicted by a model fine-tuned (from
    `model`, fmloop's default recipe) on the other folds. The validation split, when the data has
    one besides `split`, drives early stopping in every fold; otherwise each fold holds out 10%
    of its own training rows."""
    import tempfile

    from sklearn.model_selection import StratifiedKFold

    ds = data.splits[split]
    texts, y, names = list(ds["text"]), np.asarray(ds["label"]), data.labels
    _check_fold_sizes(y, len(names), folds)
    probs = np.zeros((len(y), len(names)))
    with tempfile.TemporaryDirectory(prefix="fmloop-label-issues-") as work:
        work = Path(work)
        validation = None
        if split != "validation" and "validation" in data.splits:  # the same early-stopping split every fold
            val = data.splits["validation"]
            validation = _write_split(work / "validation.parquet", list(val["text"]), [names[v] for v in val["label"]])
        folds_iter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
        for k, (train, held) in enumerate(folds_iter, 1):
            log.info("fold %d of %d: fine-tuning %s on %d rows, scoring %d", k, folds, model, len(train), len(held))
            fold = work / f"fold{k}"
            fold.mkdir()
            _write_split(fold / "train.parquet", [texts[i] for i in train], [names[y[i]] for i in train])
            if validation is not None:
                shutil.copyfile(validation, fold / "validation.parquet")
            cfg = build_config(
                FinetuneConfig, deep_merge(overrides or {}, {"data": {"path": str(fold)}, "model": {"name": model}})
            )
            cfg.train.seed = seed + k
            run = finetune(cfg, work / f"run{k}")
            fitted = load(run.path / "model")
            columns = [fitted.labels.index(n) for n in names]
            probs[held] = softmax(fitted.logits([texts[i] for i in held]))[:, columns]
            del fitted
            shutil.rmtree(run.path, ignore_errors=True)
    return probs


def _check_fold_sizes(y: np.ndarray, n_classes: int, folds: int) -> None:
    counts = np.bincount(y, minlength=n_classes)
    if counts.min() < folds:
        raise DataError(
            f"Every class needs at least {folds} examples for {folds}-fold probabilities; "
            f"the smallest has {counts.min()}. Pass --folds with a smaller number."
        )


FILTERS = (
    "confident_learning",
    "prune_by_noise_rate",
    "low_self_confidence",
    "low_normalized_margin",
    "both",
    "predicted_neq_given",
)


def find_issues(y: np.ndarray, probs: np.ndarray, filter_by: str = "confident_learning") -> np.ndarray:
    """Indices of likely label errors, most confident first (cleanlab confident learning).
    `confident_learning` (the default) flags the rows counted off the diagonal of the confident
    joint; `prune_by_noise_rate` (cleanlab's own default) flags more (higher recall, lower
    precision: on SST-2 about half of its flags were correct labels); `low_self_confidence`
    flags as many as confident learning, taking the rows whose given label is least probable."""
    from cleanlab.filter import find_label_issues

    if filter_by not in FILTERS:
        raise ConfigError(
            f"The 'filter_by' parameter of label-issues must be one of {', '.join(FILTERS)}. Got {filter_by!r} instead."
        )
    return np.asarray(
        find_label_issues(labels=y, pred_probs=probs, filter_by=filter_by, return_indices_ranked_by="self_confidence")
    )


def text_label_issues(texts: list[str], y: np.ndarray, n_classes: int, folds: int = 5, seed: int = 0):
    """(indices of likely label errors, most confident first; out-of-sample probabilities) from
    TF-IDF + logistic regression alone: fast enough to check every batch of users' feedback."""
    (features,) = feature_sets(texts, None)
    probs = out_of_sample_probabilities(features, y, n_classes, folds, seed)
    return find_issues(y, probs), probs


def label_issues(
    path: str,
    out: str | Path,
    *,
    model: str | None = None,
    split: str = "train",
    folds: int = 5,
    action: str | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    seed: int = 0,
    filter_by: str = "confident_learning",
    finetune: bool = False,
    overrides: dict | None = None,
    probabilities: str | None = None,
) -> dict:
    """Rank likely label errors of `split`; write OUT/label_issues.csv (and a fixed dataset for
    action 'drop' or 'relabel')."""
    import csv

    from rich.progress import Progress

    if action not in (None, "drop", "relabel"):
        raise ConfigError(f"Unknown action {action!r}: use --drop or --relabel.")
    if finetune and not model:
        raise ConfigError(
            "--finetune fine-tunes the base model named by --model: pass --model PATH "
            "(a Hugging Face model folder or an fmloop run)."
        )
    require_new_folder(out)
    data = load_labeled(path, text_column=text_column, label_column=label_column, hold_out=False)
    if split not in data.splits:
        raise DataError(f"{path} has no {split!r} split (it has {', '.join(data.splits)}).")
    ds = data.splits[split]
    texts, y = list(ds["text"]), np.asarray(ds["label"])
    if probabilities:
        probs = read_probabilities(probabilities, data.labels, len(y))
        features = f"probabilities from {probabilities}"
    else:
        with Progress(console=err_console, transient=True) as progress:
            task = progress.add_task("embedding" if model else "features", total=len(texts))
            sets = feature_sets(texts, model, progress=lambda n: progress.advance(task, n))
        members = [out_of_sample_probabilities(X, y, len(data.labels), folds, seed) for X in sets]
        features = f"tf-idf + mean-pooled {model}" if model else "tf-idf"
        if finetune:
            members.append(finetuned_out_of_sample_probabilities(data, split, model, folds, seed, overrides))
            features = f"{folds}-fold fine-tuning of {model}, averaged with logistic regressions on {features}"
        probs = np.mean(members, axis=0)
    ranked = find_issues(y, probs, filter_by)
    suggested = probs.argmax(1)
    names = data.labels
    with new_folder(out) as tmp:
        with open(tmp / "label_issues.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["rank", "row", "given", "suggested", "p_given", "p_suggested", "text"])
            for rank, i in enumerate(ranked, 1):
                w.writerow(
                    [
                        rank,
                        int(i) + 1,
                        names[y[i]],
                        names[suggested[i]],
                        round(float(probs[i, y[i]]), 4),
                        round(float(probs[i, suggested[i]]), 4),
                        texts[i],
                    ]
                )
        summary = {
            "source": str(path),
            "split": split,
            "rows": len(y),
            "issues": int(len(ranked)),
            "features": features,
            "folds": folds,
            "filter_by": filter_by,
            "out_of_sample_accuracy": float((suggested == y).mean()),
            "action": action,
        }
        if action:
            _write_fixed(tmp, data, split, ranked, suggested, action)
        (tmp / "label_issues.json").write_text(json.dumps(summary, indent=2) + "\n")
        write_probabilities(tmp / PROBABILITIES, probs, y, names)
    summary["ranked_rows"] = ranked
    return summary


PROBABILITIES = "probabilities.parquet"


def write_probabilities(path: Path, probs: np.ndarray, y: np.ndarray, names: list[str]) -> None:
    """The out-of-sample probabilities behind the list, one row per example: `--probabilities`
    reads them back, so another filter costs seconds instead of K more fine-tuning runs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = {"row": np.arange(1, len(y) + 1), "given": [names[v] for v in y]}
    columns.update({f"p_{name}": probs[:, j] for j, name in enumerate(names)})
    pq.write_table(pa.table(columns), path)


def read_probabilities(path: str, names: list[str], rows: int) -> np.ndarray:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as err:
        raise DataError(
            f"{path}: cannot read it as parquet ({err}). Pass the {PROBABILITIES} of an earlier label-issues run."
        ) from None
    missing = [f"p_{n}" for n in names if f"p_{n}" not in table.column_names]
    if missing or table.num_rows != rows:
        raise DataError(
            f"{path} does not belong to this data: it has {table.num_rows} rows (the split has {rows})"
            + (f" and lacks the columns {', '.join(missing)}" if missing else "")
            + ". Pass the probabilities.parquet of a label-issues run on the same split."
        )
    return np.stack([table.column(f"p_{n}").to_numpy() for n in names], 1)


def _write_fixed(folder: Path, data, split: str, ranked: np.ndarray, suggested: np.ndarray, action: str) -> None:
    """Every split as parquet with label names; `split` with the flagged rows dropped or relabelled."""
    names = data.labels
    flagged = set(int(i) for i in ranked)
    with open(folder / "changes.jsonl", "w") as fh:
        for i in ranked:
            i = int(i)
            fh.write(
                json.dumps(
                    {
                        "split": split,
                        "row": i + 1,
                        "action": action,
                        "label": names[data.splits[split]["label"][i]],
                        "new_label": names[suggested[i]] if action == "relabel" else None,
                        "text": data.splits[split]["text"][i],
                    }
                )
                + "\n"
            )
    for name, ds in data.splits.items():
        labels = [names[v] for v in ds["label"]]
        texts = list(ds["text"])
        if name == split:
            if action == "drop":
                keep = [i for i in range(len(texts)) if i not in flagged]
                texts, labels = [texts[i] for i in keep], [labels[i] for i in keep]
            else:
                labels = [names[suggested[i]] if i in flagged else labels[i] for i in range(len(labels))]
        _write_split(folder / f"{name}.parquet", texts, labels)


def _write_split(path: Path, texts: list[str], labels: list[str]) -> Path:
    """A labeled split as parquet (text, label name), as `fmloop finetune --data` reads it."""
    from datasets import Dataset

    Dataset.from_dict({"text": texts, "label": labels}).to_parquet(str(path))
    return path
