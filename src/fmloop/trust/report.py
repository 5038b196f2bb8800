"""The trust checks of one evaluation: what they measured (metrics.json keys) and how they read
(report.html sections).

    explanations   the most confidently wrong texts with their words shaded by attribution, and the
                   deletion test of the explanations on a sample of the data (faithfulness)
    slices         per-slice metrics: the columns asked for plus length (and language)
    robustness     the perturbation suite (asked for: it rescores the data a dozen times)
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from fmloop.core.html import html_table
from fmloop.models.inference import InferenceModel
from fmloop.tasks.metrics import softmax
from fmloop.trust import faithfulness
from fmloop.trust.explain import Explanation, explain_images, explain_texts
from fmloop.trust.robustness import robustness
from fmloop.trust.slices import automatic_slices, slice_metrics

WRONG_SHOWN = 8


@dataclass(frozen=True)
class TrustSettings:
    slices: tuple[str, ...] = ()  # columns of the data to slice by (the automatic slices always run)
    robustness: bool = False
    faithfulness: int = 100  # texts in the deletion test (0: none)
    explain_wrong: int = WRONG_SHOWN  # confidently wrong examples explained (0: none)
    seed: int = 0


def trust_checks(
    model: InferenceModel,
    inputs,
    y: np.ndarray,
    logits: np.ndarray,
    columns: dict[str, list[str]],
    settings: TrustSettings,
) -> tuple[dict, list[str]]:
    """({"slices", "robustness", "faithfulness", "explanations"}, [HTML sections]) for one model on
    its labeled evaluation data; `columns` holds the values of the slice columns."""
    texts = list(inputs) if model.modality == "text" else None
    found, sections = {}, []
    slices = {**{c: columns[c] for c in settings.slices}, **automatic_slices(texts, len(y))}
    if slices:
        found["slices"] = slice_metrics(model.task, y, logits, slices, settings.seed)
        sections.append(slices_section(found["slices"]))
    if model.task == "classification":
        wrong = confidently_wrong(y, logits, settings.explain_wrong)
        if len(wrong):
            if texts is not None:
                explained = explain_texts(model, [texts[i] for i in wrong])
                found["explanations"] = [dict(text=texts[i], **e.as_dict()) for i, e in zip(wrong, explained)]
                sections.append(wrong_texts_section(model, [texts[i] for i in wrong], y[wrong], explained))
            else:
                explained = explain_images(model, inputs[wrong])
                found["explanations"] = [  # the heatmaps are drawn in the report, not stored
                    {"row": int(i), **{k: v for k, v in e.as_dict().items() if k != "heatmap"}}
                    for i, e in zip(wrong, explained)
                ]
                sections.append(wrong_images_section(model, inputs[wrong], y[wrong], explained))
        if texts is not None and settings.faithfulness:
            sample = np.random.default_rng(settings.seed).permutation(len(texts))[: settings.faithfulness]
            chosen = [texts[i] for i in sample]
            found["faithfulness"] = faithfulness.deletion_curve(
                model, chosen, explain_texts(model, chosen), seed=settings.seed
            )
            sections.append(faithfulness_section(found["faithfulness"]))
        if settings.robustness:
            found["robustness"] = robustness(model, inputs, y, settings.seed)
            sections.append(robustness_section(found["robustness"]))
    return found, sections


def confidently_wrong(y: np.ndarray, logits: np.ndarray, k: int) -> np.ndarray:
    """Indices of the (at most) k wrong answers given with the highest confidence, most confident first."""
    probs = softmax(logits)
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y)
    return wrong[np.argsort(-probs[wrong, pred[wrong]])][:k]


# HTML -----------------------------------------------------------------------------------------------


def shaded_words(e: Explanation) -> str:
    """The text with each word's background shaded by its score: green raised the answer, red lowered it."""
    top = max((abs(w["score"]) for w in e.words), default=0) or 1.0
    out = []
    for w in e.words:
        a = min(1.0, abs(w["score"]) / top)
        colour = f"rgba(34,139,34,{a:.2f})" if w["score"] >= 0 else f"rgba(220,20,60,{a:.2f})"
        title = f"{w['score']:+.4f}" + ("" if w["read"] else " (past the model's window: not read)")
        out.append(f'<span style="background:{colour}" title="{title}">{html.escape(w["word"])}</span>')
    return " ".join(out)


def wrong_texts_section(model, texts: list[str], y: np.ndarray, explained: list[Explanation]) -> str:
    rows = "".join(
        f"<tr><td>{shaded_words(e)}</td><td>{html.escape(model.labels[t])}</td>"
        f"<td>{html.escape(e.target)} ({e.output:.3f})</td></tr>"
        for e, t in zip(explained, y)
    )
    method = explained[0].method if explained else ""
    return (
        "<h2>Why it was wrong: the most confidently wrong, explained</h2>"
        f"<p>Each word shaded by its attribution to the wrong answer ({html.escape(method)}): green "
        "words pushed towards it, red ones against it; hover for the score.</p>"
        f"<table><tr><th>text</th><th>true</th><th>answered (confidence)</th></tr>{rows}</table>"
    )


def wrong_images_section(model, pixels: np.ndarray, y: np.ndarray, explained: list[Explanation]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fmloop.core.html import figure_to_data_uri

    n = len(explained)
    fig, axes = plt.subplots(2, n, figsize=(1.8 * n, 3.8), squeeze=False)
    for j, (image, e, t) in enumerate(zip(pixels, explained, y)):
        axes[0, j].imshow(
            image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None
        )
        axes[0, j].set_title(f"{e.target} {e.output:.2f}\ntrue: {model.labels[t]}", fontsize=7)
        heat = np.asarray(e.heatmap)
        bound = np.abs(heat).max() or 1.0
        axes[1, j].imshow(heat, cmap="PiYG", vmin=-bound, vmax=bound)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.tight_layout()
    uri = figure_to_data_uri(fig)
    plt.close(fig)
    return (
        "<h2>Why it was wrong: the most confidently wrong, explained</h2>"
        f"<p>Below each image, its attribution to the wrong answer ({html.escape(explained[0].method)}): "
        f'green pixels pushed towards it, pink ones against it.</p><img alt="explained images" src="{uri}">'
    )


def faithfulness_section(curve: dict) -> str:
    if not curve["fractions"]:
        return "<h2>Faithfulness of the explanations</h2><p>No text long enough to delete words from.</p>"
    rows = "".join(
        f"<tr><td>{r['fraction']:.0%}</td><td>{r['top_drop']:.3f}</td><td>{r['random_drop']:.3f}</td>"
        f"<td>{r['difference']:+.3f} [{r['interval_95'][0]:+.3f}, {r['interval_95'][1]:+.3f}]</td>"
        f"<td>{_ratio(r['ratio'])}</td></tr>"
        for r in curve["fractions"]
    )
    verdict = (
        "the explanations point at what the model uses"
        if curve["faithful"]
        else "the explanations are no better than chance at finding what the model uses"
    )
    return (
        "<h2>Faithfulness of the explanations</h2>"
        f"<p>Over {curve['n']} texts, the most-attributed words were deleted, and as many random words "
        f"({curve['draws']} draws); the drop is in the answer's confidence. At {curve['headline']['fraction']:.0%}: "
        f"{verdict}.</p><table><tr><th>words deleted</th><th>drop, top words</th><th>drop, random words</th>"
        f"<th>difference (95% interval)</th><th>ratio</th></tr>{rows}</table>"
    )


def _ratio(ratio: float | None) -> str:
    return "" if ratio is None else f"{ratio:.2f}x"


def slices_section(found: dict) -> str:
    parts = [f"<h2>Slices</h2><p>{html.escape(found['metric'])} overall: {found['overall']:.4f}.</p>"]
    worst = found.get("worst")
    if worst:
        parts.append(
            f"<p>Worst slice: {html.escape(worst['column'])} = {html.escape(worst['name'])} "
            f"({worst['value']:.4f} on {worst['n']} rows).</p>"
        )
    for column, col in found["columns"].items():
        rows = "".join(
            f"<tr><td>{html.escape(r['name'])}</td><td>{r['n']}</td><td>{r['value']:.4f}</td>"
            f"<td>[{r['interval_95'][0]:.4f}, {r['interval_95'][1]:.4f}]</td></tr>"
            for r in col["slices"]
        )
        gap = f"largest gap {col['gap']:.4f}" if col["gap"] is not None else "one slice large enough to compare"
        parts.append(
            f"<h3>{html.escape(column)} ({gap})</h3><table><tr><th>slice</th><th>rows</th>"
            f"<th>{html.escape(found['metric'])}</th><th>95% interval</th></tr>{rows}</table>"
        )
    return "".join(parts)


def robustness_section(found: dict) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(r['name'])}</td><td>{r['changed']}</td>"
        f"<td>{r['accuracy']:.4f} [{r['accuracy_95'][0]:.4f}, {r['accuracy_95'][1]:.4f}]</td><td>"
        + (
            ""
            if r["invariance"] is None
            else f"{r['invariance']:.4f} [{r['invariance_95'][0]:.4f}, {r['invariance_95'][1]:.4f}]"
        )
        + "</td></tr>"
        for r in found["perturbations"]
    )
    directional = "".join(
        f"<tr><td>{html.escape(d['name'])}</td><td>{d['rate']:.4f} [{d['rate_95'][0]:.4f}, {d['rate_95'][1]:.4f}]</td></tr>"
        for d in found["directional"]
    )
    s = found["summary"]
    return (
        "<h2>Robustness</h2>"
        + html_table(
            {
                "accuracy, clean": s["clean_accuracy"],
                "accuracy, mean over perturbations": s["perturbed_accuracy"],
                "lowest invariance": f"{s['worst_invariance']} ({s['worst_perturbation']})",
            }
        )
        + "<p>Invariance: the share of changed inputs whose answer held.</p>"
        "<table><tr><th>perturbation</th><th>inputs changed</th><th>accuracy (95% interval)</th>"
        f"<th>invariance (95% interval)</th></tr>{rows}</table>"
        + (
            f"<h3>Directional tests</h3><table><tr><th>test</th><th>held (95% interval)</th></tr>{directional}</table>"
            if directional
            else ""
        )
    )


def describe_settings(settings: TrustSettings, modality: str) -> str:
    automatic = ["length", "language"] if modality == "text" else []
    parts = ["slices by " + ", ".join([*settings.slices, *automatic])] if settings.slices or automatic else []
    if settings.explain_wrong:
        parts.append(f"the {settings.explain_wrong} most confidently wrong explained")
    if settings.faithfulness and modality == "text":
        parts.append(f"deletion test on {settings.faithfulness} texts")
    parts.append("perturbation suite" if settings.robustness else "no perturbation suite (--robustness runs it)")
    return "; ".join(parts)


def trust_lines(found: dict) -> list[str]:
    """The trust checks in a few terminal lines (the report has the tables)."""
    lines = []
    worst = (found.get("slices") or {}).get("worst")
    if worst:
        lines.append(
            f"worst slice: {worst['column']} = {worst['name']}: {worst['value']:.4f} on {worst['n']} rows "
            f"(overall {found['slices']['overall']:.4f})"
        )
    if found.get("faithfulness"):
        lines.append(faithfulness.describe(found["faithfulness"]))
    if found.get("robustness"):
        s = found["robustness"]["summary"]
        lines.append(
            f"robustness: accuracy {s['clean_accuracy']:.4f} clean, {s['perturbed_accuracy']:.4f} under "
            f"perturbations on average; lowest invariance {s['worst_invariance']:.4f} ({s['worst_perturbation']})"
        )
    return lines
