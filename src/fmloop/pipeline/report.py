"""The lifecycle report: OUT/report.html, one self-contained page per pipeline run that follows the
loop stage by stage (what the data lost and why, the pretraining curve, the ladder, fine-tuning
against its baseline, compression, the registered and served version, feedback and the gate's
decision), each stage linking its own report. Written after every `fmloop run`, finished or not."""

from __future__ import annotations

import html
import json
import logging
import os
from pathlib import Path

from fmloop.core.artifacts import atomic_write_text, read_jsonl
from fmloop.core.html import CSS, figure_to_data_uri, format_value, html_table, png_file_data_uri
from fmloop.core.machine import cpu_name
from fmloop.evaluate.floor import describe_floor
from fmloop.pipeline.runner import read_lock
from fmloop.pipeline.spec import Pipeline, Stage

log = logging.getLogger(__name__)


def write_report(pipeline: Pipeline) -> Path:
    """Write OUT/report.html from the lock file and the stages' folders; never raises (a report
    that cannot be drawn must not hide why the pipeline stopped)."""
    path = pipeline.out / "report.html"
    try:
        atomic_write_text(path, render(pipeline))
    except Exception as err:  # noqa: BLE001 - reported, never fatal
        log.warning("could not write the lifecycle report %s: %s: %s", path, type(err).__name__, err)
    return path


def render(pipeline: Pipeline) -> str:
    lock = read_lock(pipeline.out)
    entries = lock.get("stages", {})
    parts = [
        f"<h1>{html.escape(pipeline.name)}: the loop, stage by stage</h1>",
        f"<p>{html.escape(lock.get('command', ''))} &middot; {html.escape(cpu_name())} &middot; {os.cpu_count()} cores</p>",
        "".join(f"<p><b>{html.escape(line)}</b></p>" for line in verdicts(pipeline)),
        "<h2>Stages</h2>",
        _stage_table(pipeline, entries),
    ]
    for stage in pipeline.stages.values():
        entry = entries.get(stage.name)
        if not entry or not stage.folder.is_dir():
            continue
        section = SECTIONS.get(stage.kind.name, _generic)(stage, entry)
        if section:
            parts.append(f"<h2 id='{stage.name}'>{html.escape(stage.name)} ({stage.kind.name})</h2>{section}")
    body = "\n".join(parts)
    return f"<!doctype html><meta charset='utf-8'><title>{html.escape(pipeline.name)}</title><style>{CSS}</style>{body}"


def reached(kind: str, m: dict) -> str:
    """What a stage reached, in words, from its lock-file metrics."""
    nan = float("nan")
    if kind == "clean":
        return f"kept {m.get('kept')} of {m.get('rows')} rows"
    if kind == "pretrain":
        return (
            f"{m.get('steps')} steps, {m.get('tokens_seen', 0):,} tokens, held-out loss "
            f"{m.get('initial_eval_loss', nan):.2f} -> {m.get('eval_loss', nan):.2f}"
        )
    if kind == "finetune":
        size = f", {m['model_mb']} MB" if "model_mb" in m else ""
        floor = f" (TF-IDF on its labels {m['floor_test_accuracy']:.4f})" if "floor_test_accuracy" in m else ""
        return f"{m.get('steps')} steps, test accuracy {m.get('test_accuracy', nan):.4f}{floor}{size}"
    if kind == "evaluate":
        return f"test accuracy {m.get('accuracy', nan):.4f}"
    if kind == "quantize":
        return (
            f"int8 ONNX, {m.get('model_mb')} MB, agrees with fp32 on {m.get('parity_agreement', nan):.1%} "
            f"of validation (accuracy {m.get('parity_accuracy', nan):.4f} vs {m.get('parity_parent_accuracy', nan):.4f})"
        )
    if kind == "users":
        return (
            f"served {m.get('served')} (accuracy {m.get('served_accuracy')}), {m.get('corrections')} corrections "
            f"({m.get('wrong_corrections')} wrong), {m.get('audit_labels')} audit labels"
        )
    if kind == "retrain":
        if not m:  # a judge_only pass that found no challenger waiting
            return "nothing to judge"
        target = (
            f"new audit labels: champion {m['champion_target']:.4f} vs challenger {m['challenger_target']:.4f}; "
            if "champion_target" in m
            else "no audit labels since its snapshot yet; "
        )
        return f"{target}validation {m.get('champion_guard', nan):.4f} vs {m.get('challenger_guard', nan):.4f}"
    return ", ".join(f"{k} {format_value(v)}" for k, v in list(m.items())[:4])


def verdicts(pipeline: Pipeline) -> list[str]:
    """The loop's answers in sentences: each registered model against TF-IDF on its labels, what
    pretraining bought against its baseline (each evaluate stage with one), and what each
    retrain's gate decided."""
    lines = []
    for stage in pipeline.stages.values():
        if stage.kind.name == "finetune" and stage.register:
            m = _read_json(stage.folder / "manifest.json")
            if m.get("floor"):
                lines.append(f"{stage.name}: {describe_floor(m['floor'], m['metrics']['test_accuracy'])}")
        if stage.kind.name == "evaluate":
            ev = _read_json(stage.folder / "metrics.json")
            test = (ev.get("comparison") or {}).get("test")
            if test:
                metric = test["metric"]
                lines.append(
                    f"{stage.name}: {test['difference']:+.4f} {metric} on the test split ({ev['metrics'][metric]:.4f} "
                    f"vs the baseline's {ev['comparison']['baseline_metrics'][metric]:.4f}, 95% interval "
                    f"[{test['interval'][0]:+.4f}, {test['interval'][1]:+.4f}], paired bootstrap p = {test['p_value']:.3f})"
                )
        if stage.kind.name == "retrain":
            m = _read_json(stage.folder / "manifest.json")
            if m.get("status") == "finished":
                if m.get("challenger") is None:
                    lines.append(f"{stage.name}: {m.get('reason')}")
                else:
                    lines.append(f"{stage.name}: challenger {m.get('challenger')} {_outcome(m)}. {m.get('reason')}")
    return lines


def _link(stage: Stage, out: Path, name: str = "report.html") -> str:
    target = stage.folder / name
    if not target.exists():
        return ""
    return f"<a href='{html.escape(os.path.relpath(target, out))}'>{html.escape(name)}</a>"


def _stage_table(pipeline: Pipeline, entries: dict) -> str:
    rows = []
    for stage in pipeline.stages.values():
        entry = entries.get(stage.name, {})
        metrics = entry.get("metrics") or {}
        budget = f" ({metrics['stop_reason']})" if "time budget" in str(metrics.get("stop_reason", "")) else ""
        what = reached(stage.kind.name, metrics) + budget if metrics else ""
        rows.append(
            "<tr>"
            + "".join(
                f"<td>{c}</td>"
                for c in (
                    f"<a href='#{stage.name}'>{html.escape(stage.name)}</a>",
                    stage.kind.name,
                    html.escape(entry.get("status", "not run")),
                    f"{entry['seconds']:.0f} s" if "seconds" in entry else "",
                    html.escape(what),
                    html.escape(entry.get("registered", "")),
                    _link(stage, pipeline.out),
                )
            )
            + "</tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("stage", "kind", "status", "time", "reached", "registered", "report"))
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _generic(stage: Stage, entry: dict) -> str:
    metrics = entry.get("metrics") or {}
    return html_table(metrics) if metrics else ""


def _clean(stage: Stage, entry: dict) -> str:
    report = _read_json(stage.folder / "clean_report.json")
    rows = {
        split: f"kept {v.get('kept')} of {v.get('rows')}; removed {v.get('removed') or 'none'}"
        for split, v in report.get("splits", {}).items()
    }
    return (
        html_table(rows)
        + "<p>Every removed row, with its reason: "
        + _link(stage, stage.folder.parent, "removed.jsonl")
        + "</p>"
    )


def _curve(stage: Stage, key: str, ylabel: str) -> str:
    rows = (
        [r for r in read_jsonl(stage.folder / "metrics.jsonl") if key in r]
        if (stage.folder / "metrics.jsonl").exists()
        else []
    )
    if len(rows) < 2:
        return ""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3))
    ax.plot([r["step"] for r in rows], [r[key] for r in rows], marker="o", ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    uri = figure_to_data_uri(fig)
    plt.close(fig)
    return f"<img src='{uri}' alt='{html.escape(ylabel)}'>"


def _pretrain(stage: Stage, entry: dict) -> str:
    return _curve(stage, "eval_loss", "held-out loss") + _generic(stage, entry)


def _evaluate(stage: Stage, entry: dict) -> str:
    result = _read_json(stage.folder / "metrics.json")
    comparison = (result.get("comparison") or {}).get("test") or {}
    if not comparison:
        return html_table(result.get("metrics", {}))
    name = comparison.get("metric")
    low, high = comparison.get("interval", [float("nan")] * 2)
    return (
        f"<p>{html.escape(str(name))} on {html.escape(str(result.get('data')))}: "
        f"<b>{result['metrics'].get(name, float('nan')):.4f}</b> against the baseline's "
        f"{result['comparison']['baseline_metrics'].get(name, float('nan')):.4f}: difference "
        f"{comparison.get('difference', float('nan')):+.4f}, 95% interval [{low:+.4f}, {high:+.4f}], "
        f"paired bootstrap p = {comparison.get('p_value', float('nan')):.3f}.</p>"
    )


def _image(stage: Stage, name: str) -> str:
    path = stage.folder / name
    if not path.exists():
        return ""
    return f"<img src='{png_file_data_uri(path)}' alt='{name}'>"


def _ladder(stage: Stage, entry: dict) -> str:
    table = stage.folder / "ladder.md"
    text = table.read_text() if table.exists() else ""
    return _image(stage, "ladder.png") + (f"<pre>{html.escape(text)}</pre>" if text else "")


def _users(stage: Stage, entry: dict) -> str:
    return html_table(_read_json(stage.folder / "users.json"))


def _retrain(stage: Stage, entry: dict) -> str:
    manifest = _read_json(stage.folder / "manifest.json")
    if manifest.get("status") != "finished":
        return _generic(stage, entry)
    return (
        f"<p>Challenger {html.escape(str(manifest.get('challenger')))}: <b>{_outcome(manifest)}</b>. "
        f"{html.escape(str(manifest.get('reason', '')))}</p>"
        + html_table({**manifest.get("feedback", {}), **manifest.get("metrics", {})})
    )


def _outcome(manifest: dict) -> str:
    if manifest.get("promoted"):
        return "promoted to @champion"
    if manifest.get("decision") == "pending":
        return "pending (waiting for audit labels)"
    return "not promoted"


SECTIONS = {
    "clean": _clean,
    "pretrain": _pretrain,
    "evaluate": _evaluate,
    "ladder": _ladder,
    "users": _users,
    "retrain": _retrain,
}
