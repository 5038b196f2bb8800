"""`fmloop evaluate`: score a model on labeled data; metrics.json + a self-contained report.html.

With a baseline, both models are scored on the same examples and compared with a paired
bootstrap test: the "before and after fine-tuning" comparison.
"""

from __future__ import annotations

import html
import logging
from pathlib import Path

import numpy as np

from fmloop.core.artifacts import RunDir, atomic_write_json, atomic_write_text, config_hash, read_jsonl
from fmloop.core.errors import DataError
from fmloop.core.html import CSS, figure_to_data_uri, html_table
from fmloop.data.images import load_images
from fmloop.data.labeled import load_labeled
from fmloop.data.tagged import is_tagged_source, read_tagged, tag_ids
from fmloop.evaluate.config import EvaluateConfig
from fmloop.evaluate.report import training_curves
from fmloop.models.loading import load
from fmloop.tasks import get_task
from fmloop.tasks.bootstrap import bootstrap_intervals, paired_bootstrap
from fmloop.tasks.metrics import softmax
from fmloop.trust.report import WRONG_SHOWN, TrustSettings, confidently_wrong, describe_settings, trust_checks

log = logging.getLogger(__name__)


def labeled_inputs(
    model,
    data_path: str,
    splits=("test", "validation"),
    text_column: str | None = None,
    label_column: str | None = None,
    columns: tuple[str, ...] = (),
):
    """(inputs, examples, y_true, where) for the first of `splits` that `data_path` has (else its
    train split): texts or uint8 images, in the form `model.logits` takes; `examples["columns"]`
    holds the values of `columns` (text data)."""

    if getattr(model, "modality", "text") == "image":
        data = load_images(
            data_path,
            labels=model.labels,
            image_column=text_column,
            label_column=label_column,
            hold_out=False,
            size=(model.size, model.size),
            channels=model.channels,
        )
        split = next((s for s in splits if s in data.splits), "train")
        images = data.splits[split]
        return images.pixels, {"images": images.pixels, "names": images.names}, images.labels, f"{data_path} [{split}]"
    if model.task == "tokens":
        tagged = read_tagged(data_path, labels=model.labels, hold_out=False)
        split = next((s for s in splits if s in tagged.splits), "train")
        sentences = tagged.splits[split]
        examples = {"texts": [" ".join(words) for words in sentences.words], "columns": {}}
        return sentences.words, examples, tag_ids(sentences.tags, model.labels), tagged.origin[split]
    data = load_labeled(
        data_path,
        task=model.task,
        text_column=text_column,
        label_column=label_column,
        labels=model.labels,
        hold_out=False,
        columns=tuple(columns),
    )
    split = next((s for s in splits if s in data.splits), "train")
    ds = data.splits[split]
    examples = {"texts": ds["text"], "columns": {c: ds[c] for c in columns if c in ds.column_names}}
    return ds["text"], examples, np.asarray(ds["label"]), data.origin.get(split, data_path)


def unlabeled_inputs(model, path: str, column: str | None = None) -> tuple[list | np.ndarray, list[str]]:
    """(inputs, names) of every row of `path`, in order, in the form `model.logits` takes: texts
    (named by themselves), or uint8 images named by their file or row."""
    if getattr(model, "modality", "text") == "image":
        data = load_images(
            path,
            need_labels=False,
            image_column=column,
            hold_out=False,
            size=(model.size, model.size),
            channels=model.channels,
        )
        return np.concatenate([s.pixels for s in data.splits.values()]), [
            n for s in data.splits.values() for n in s.names
        ]
    if model.task == "tokens" and is_tagged_source(path):  # words as split there (tags, if any, unread)
        tagged = read_tagged(path, hold_out=False, need_tags=False)
        words = [w for split in tagged.splits.values() for w in split.words]
        return words, [" ".join(w) for w in words]
    if model.task == "tokens":  # raw texts, split into words by the model
        data = load_labeled(path, text_column=column, need_labels=False, hold_out=False)
    else:
        data = load_labeled(
            path, task=model.task, text_column=column, labels=model.labels, need_labels=False, hold_out=False
        )
    texts = [t for split in data.splits.values() for t in split["text"]]
    return texts, texts


def score(
    model_path: str,
    data_path: str,
    text_column: str | None = None,
    label_column: str | None = None,
    batch_size: int = 64,
    columns: tuple[str, ...] = (),
):
    """(model, inputs, examples, y_true, logits, where) for every labeled row of `data_path` (a
    folder: its test split, else validation)."""

    model = load(model_path)
    inputs, examples, y_true, where = labeled_inputs(
        model, data_path, text_column=text_column, label_column=label_column, columns=columns
    )
    logits = model_logits(model, inputs, batch_size, f"scoring {Path(model_path).name}")
    return model, inputs, examples, y_true, logits, where


def model_logits(model, inputs, batch_size: int = 64, what: str = "scoring") -> np.ndarray:
    """`model.logits(inputs)` with a transient progress bar."""
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task(what, total=len(inputs))
        return model.logits(inputs, batch_size, progress=lambda n: progress.advance(task, n))


def run(cfg: EvaluateConfig, out: str | Path | None = None) -> RunDir:
    """Score `cfg.model` on `cfg.data` into `out` (default: beside the model): metrics.json,
    report.html and a manifest naming the model (and baseline) scored. Rerunning replaces them."""
    model, inputs, examples, y_true, logits, where = score(
        cfg.model, cfg.data, cfg.text_column, cfg.label_column, cfg.batch_size, tuple(cfg.slices)
    )
    if model.modality == "image" and cfg.slices:
        raise DataError(f"--slices names columns of text data; {cfg.data} holds images (sliced by nothing yet).")
    run = RunDir(out or _default_out(model.folder))
    comparison, parents = None, [model.folder]
    if cfg.baseline:
        base_model, _, _, base_y, base_logits, _ = score(
            cfg.baseline, cfg.data, cfg.text_column, cfg.label_column, cfg.batch_size
        )
        if base_model.task != model.task or base_model.labels != model.labels:
            raise DataError(
                f"The baseline {cfg.baseline} predicts {base_model.labels or 'scores'}, the model "
                f"{cfg.model} predicts {model.labels or 'scores'}: they cannot be compared."
            )
        comparison = {
            "baseline": cfg.baseline,
            "baseline_metrics": _scalars(get_task(model.task).metrics(base_y, base_logits, model.labels)),
            "baseline_intervals": bootstrap_intervals(model.task, base_y, base_logits, labels=model.labels),
            "test": paired_bootstrap(model.task, y_true, logits, base_logits, labels=model.labels),
        }
        parents.append(base_model.folder)
    settings = TrustSettings(
        slices=tuple(cfg.slices),
        robustness=cfg.robustness,
        faithfulness=cfg.faithfulness,
        explain_wrong=WRONG_SHOWN if cfg.faithfulness else 0,
    )
    if model.task == "tokens":  # the slices, perturbations and attributions read one label per input
        log.info("trust checks: none for token classification yet")
        found, sections = {}, []
        examples.pop("columns", None)
    else:
        log.info("trust checks: %s", describe_settings(settings, model.modality))
        found, sections = trust_checks(model, inputs, y_true, logits, examples.pop("columns", {}), settings)
    log.info("writing metrics.json and report.html to %s", run.path)
    run.path.mkdir(parents=True, exist_ok=True)
    run.write_config(cfg.resolved())
    result = write_evaluation(
        out=run.path,
        model=cfg.model,
        data=where,
        task=model.task,
        labels=model.labels,
        y_true=y_true,
        logits=logits,
        curves=read_jsonl(model.folder.parent / "metrics.jsonl"),
        comparison=comparison,
        uncalibrated_logits=logits * model.temperature if model.temperature != 1.0 else None,
        sections=sections,
        extra={"trust": found},
        explained_wrong="explanations" in found,
        **examples,
    )
    run.write_manifest(
        kind="evaluate",
        status="finished",
        config_hash=config_hash(cfg.resolved()),
        parents=parents,
        task=model.task,
        labels=model.labels,
        data=where,
        metrics=_scalars(result["metrics"]),
    )
    return run


def _default_out(folder: Path) -> Path:
    """Beside the model: the run dir for RUN/model, else an `evaluation` folder next to it."""
    if (folder.parent / "manifest.json").exists():
        return folder.parent / "evaluation"
    return folder.parent / f"{folder.name}-evaluation"


def _scalars(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if isinstance(v, float)}


def write_evaluation(
    *,
    out: Path,
    model: str,
    data: str,
    task: str,
    labels: list[str] | None,
    y_true: np.ndarray,
    logits: np.ndarray,
    texts: list[str] | None = None,
    curves: list[dict] | None = None,
    comparison: dict | None = None,
    images: np.ndarray | None = None,
    names: list[str] | None = None,
    uncalibrated_logits: np.ndarray | None = None,
    sections: list[str] = (),
    extra: dict | None = None,
    explained_wrong: bool = False,
) -> dict:
    """metrics.json + report.html in `out`. The report's "most confidently wrong" section shows
    `texts`, or a grid of `images` (uint8 N x H x W x C) captioned with `names`. With
    `uncalibrated_logits` (the model's before its temperature), calibration is shown before and
    after; `sections` (HTML) and `extra` (metrics.json keys) carry the trust checks."""
    metrics = get_task(task).metrics(y_true, logits, labels)
    result = {
        "model": str(model),
        "data": data,
        "task": task,
        "n": int(len(y_true)),
        "labels": labels,
        "metrics": metrics,
        "intervals_95": bootstrap_intervals(task, y_true, logits, labels=labels),
    }
    if uncalibrated_logits is not None and "ece" in metrics:
        before = get_task(task).metrics(y_true, uncalibrated_logits, labels)
        result["uncalibrated"] = {"ece": before["ece"], "reliability": before["reliability"]}
    if comparison:
        result["comparison"] = comparison
    result.update(extra or {})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "metrics.json", result)
    if explained_wrong:
        wrong = ""  # a trust section shows them, explained
    elif images is not None:
        wrong = _confidently_wrong_images(task, labels, y_true, logits, images, names)
    else:
        wrong = _confidently_wrong(task, labels, y_true, logits, texts or [])
    atomic_write_text(out / "report.html", _report(result, curves or [], wrong + "".join(sections)))
    return result


# Report -----------------------------------------------------------------------------------------


def _confusion_plot(matrix: list[list[int]], labels: list[str]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    size = min(12, 2.5 + 0.5 * len(labels))
    fig, ax = plt.subplots(figsize=(size, size * 0.85))
    ax.imshow(m, cmap="Blues")
    ax.set(
        xticks=range(len(labels)),
        yticks=range(len(labels)),
        xticklabels=labels,
        yticklabels=labels,
        xlabel="predicted",
        ylabel="true",
        title="confusion matrix",
    )
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(j, i, int(m[i, j]), ha="center", va="center", color="white" if m[i, j] > m.max() / 2 else "black")
    uri = figure_to_data_uri(fig)
    plt.close(fig)
    return uri


def _reliability_plot(rel: dict, title: str = "reliability diagram") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    edges = np.asarray(rel["edges"])
    centers = (edges[:-1] + edges[1:]) / 2
    acc = [a if a is not None else 0 for a in rel["accuracy"]]
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.bar(centers, acc, width=edges[1] - edges[0], edgecolor="black", alpha=0.7, label="accuracy")
    ax.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    ax.set(xlabel="confidence", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(loc="upper left")
    uri = figure_to_data_uri(fig)
    plt.close(fig)
    return uri


def _confidently_wrong(task, labels, y_true, logits, texts, k=10) -> str:
    if not get_task(task).single_class:
        return ""
    probs = softmax(logits)
    pred = probs.argmax(1)
    wrong = confidently_wrong(y_true, logits, k)
    rows = "".join(
        f"<tr><td>{html.escape(texts[i][:300])}</td><td>{html.escape(labels[y_true[i]])}</td>"
        f"<td>{html.escape(labels[pred[i]])}</td><td>{probs[i, pred[i]]:.3f}</td></tr>"
        for i in wrong
    )
    return (
        (
            "<h2>Most confidently wrong</h2><table><tr><th>text</th><th>true</th><th>predicted</th>"
            f"<th>confidence</th></tr>{rows}</table>"
        )
        if rows
        else ""
    )


def _confidently_wrong_images(task, labels, y_true, logits, images, names, k=24) -> str:
    """A grid of the test images the model got wrong with the highest confidence."""
    if not get_task(task).single_class:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    probs = softmax(logits)
    pred = probs.argmax(1)
    wrong = confidently_wrong(y_true, logits, k)
    if not len(wrong):
        return ""
    cols = min(8, len(wrong))
    rows = int(np.ceil(len(wrong) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.6 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), wrong):
        image = images[i]
        ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
        ax.set_title(f"{labels[pred[i]]} {probs[i, pred[i]]:.2f}\ntrue: {labels[y_true[i]]}", fontsize=7)
    fig.tight_layout()
    uri = figure_to_data_uri(fig)
    plt.close(fig)
    listed = "".join(
        f"<li>{html.escape(str(names[i]) if names else str(i))}: predicted {html.escape(labels[pred[i]])} "
        f"({probs[i, pred[i]]:.3f}), true {html.escape(labels[y_true[i]])}</li>"
        for i in wrong
    )
    return (
        f"<h2>Most confidently wrong</h2><p>Title: predicted label and confidence; below it the true label.</p>"
        f'<img alt="most confidently wrong images" src="{uri}"><details><summary>which images</summary>'
        f"<ul>{listed}</ul></details>"
    )


def _report(result: dict, curves, wrong: str) -> str:
    metrics, task, labels = result["metrics"], result["task"], result["labels"]
    intervals = result["intervals_95"]
    headline = {
        k: (f"{v:.4f}  [{intervals[k][0]:.4f}, {intervals[k][1]:.4f}]" if k in intervals else v)
        for k, v in metrics.items()
        if isinstance(v, float)
    }
    body = [
        "<h1>fmloop evaluation</h1>",
        html_table({"model": result["model"], "data": result["data"], "examples": result["n"], "task": task}),
        "<h2>Metrics (95% bootstrap intervals)</h2>",
        html_table(headline),
    ]
    if "per_class" in metrics:
        rows = "".join(
            f"<tr><th>{html.escape(name)}</th><td>{m['precision']:.3f}</td><td>{m['recall']:.3f}</td>"
            f"<td>{m['f1']:.3f}</td><td>{m['support']}</td></tr>"
            for name, m in metrics["per_class"].items()
        )
        body.append(
            "<h2>Per class</h2><table><tr><th></th><th>precision</th><th>recall</th><th>F1</th>"
            f"<th>support</th></tr>{rows}</table>"
        )
    comparison = result.get("comparison")
    if comparison:
        test = comparison["test"]
        name = test["metric"]
        body += [
            "<h2>Against the baseline</h2>",
            html_table(
                {
                    "baseline": comparison["baseline"],
                    f"{name} (model)": metrics.get(name),
                    f"{name} (baseline)": comparison["baseline_metrics"].get(name),
                    "difference (model - baseline)": f"{test['difference']:+.4f}  [{test['interval'][0]:+.4f}, {test['interval'][1]:+.4f}]",
                    "paired bootstrap p-value": test["p_value"],
                    "better": {"A": "model", "B": "baseline"}.get(test["better"], "neither"),
                }
            ),
        ]
    if "confusion_matrix" in metrics:
        body += [
            "<h2>Confusion matrix and calibration</h2>",
            f'<img alt="confusion matrix" src="{_confusion_plot(metrics["confusion_matrix"], labels)}">',
            f'<img alt="reliability diagram" src="{_reliability_plot(metrics["reliability"])}">',
            f"<p>Expected calibration error: {metrics['ece']:.4f}</p>",
        ]
        before = result.get("uncalibrated")
        if before:
            body += [
                f"<p>Before temperature scaling the expected calibration error was {before['ece']:.4f} "
                "(the model's own confidences, same answers):</p>",
                f'<img alt="reliability diagram before calibration" '
                f'src="{_reliability_plot(before["reliability"], "before temperature scaling")}">',
            ]
    uri = training_curves(curves)
    if uri:
        body += ["<h2>Training curves</h2>", f'<img alt="training curves" src="{uri}">']
    body.append(wrong)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>fmloop evaluation</title><style>{CSS}</style>"
        f"</head><body>{''.join(body)}</body></html>"
    )
