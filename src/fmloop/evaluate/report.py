"""Self-contained HTML reports (plots embedded as PNG data URIs: one file to open or mail)."""

from __future__ import annotations

import html

from fmloop.core.artifacts import RunDir, atomic_write_text
from fmloop.core.html import CSS, figure_to_data_uri, html_table
from fmloop.core.manifest import SUMMARY_FIELDS


def training_curves(rows: list[dict]) -> str | None:
    """Train/held-out loss, learning rate and throughput against step, as one PNG data URI."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in rows if "loss" in r]
    evals = [r for r in rows if "eval_loss" in r and "loss" not in r]
    if not train and not evals:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    ax = axes[0]
    if train:
        ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train", alpha=0.8)
    if evals:
        ax.plot([r["step"] for r in evals], [r["eval_loss"] for r in evals], "o-", label="held-out")
    ax.set(xlabel="step", ylabel="loss", title="loss")
    ax.legend()
    ax.grid(alpha=0.3)
    if train:
        axes[1].plot([r["step"] for r in train], [r["lr"] for r in train])
        axes[1].set(xlabel="step", title="learning rate")
        axes[1].grid(alpha=0.3)
        axes[2].plot([r["step"] for r in train], [r["tokens_per_s"] for r in train])
        axes[2].set(xlabel="step", title="tokens / s (training only)")
        axes[2].set_ylim(bottom=0)
        axes[2].grid(alpha=0.3)
    uri = figure_to_data_uri(fig)
    plt.close(fig)
    return uri


def write_training_report(run: RunDir) -> str:
    """Write RUN/report.html: summary, curves, resolved config. Returns its path."""
    manifest = run.read_manifest()
    rows = run.read_metrics()
    curves = training_curves(rows)
    summary = {k: manifest.get(k) for k in SUMMARY_FIELDS}
    # parents as paths (the manifest stores them relative to the run dir, with a fingerprint)
    summary["parents"] = ", ".join(str(p.resolve()) for p in manifest.parent_paths(run.path)) or None
    metrics = manifest.get("metrics", {})
    config_text = run.config_path.read_text() if run.config_path.exists() else ""
    body = [
        f"<h1>fmloop {html.escape(str(manifest.get('kind')))} run: {html.escape(run.path.name)}</h1>",
        "<h2>Summary</h2>",
        html_table(summary),
        "<h2>Metrics</h2>",
        html_table(metrics),
    ]
    if curves:
        body += ["<h2>Training curves</h2>", f'<img alt="training curves" src="{curves}">']
    body += ["<h2>Resolved config</h2>", f"<pre>{html.escape(config_text)}</pre>"]
    page = f"<!doctype html><html><head><meta charset='utf-8'><title>fmloop report</title><style>{CSS}</style></head><body>{''.join(body)}</body></html>"
    path = run.path / "report.html"
    atomic_write_text(path, page)
    return str(path)
