"""`fmloop explain`: why a model answered what it did, for one input or a file of them."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Optional

import typer

from fmloop.cli.common import err_console, setup_logging, user_errors


@user_errors
def explain_command(
    model: str = typer.Argument(
        ..., help="A model folder, run dir, registry reference, ONNX or int8 export, or ensemble."
    ),
    input: str = typer.Argument(
        ...,
        help="A text in quotes, an image file, or data: a .txt/CSV/JSONL/parquet file of texts, or an image folder or table.",
    ),
    target: Optional[str] = typer.Option(None, "--target", help="The label to explain. Default: each input's answer."),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        help="Data: the JSONL to write (an .html with the words shaded is written beside it). An image: the PNG heatmap.",
    ),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    limit: int = typer.Option(200, "--limit", min=1, help="At most this many rows of a data file are explained."),
    as_json: bool = typer.Option(False, "--json", help="One input: print the explanation as JSON."),
):
    """Explain answers: a score per word (texts) or per pixel (images) of how much it raised the
    answer's confidence. Integrated gradients for PyTorch models (with its convergence delta),
    ablation for ONNX, int8 and ensembles (docs/trust.md)."""
    setup_logging()
    from fmloop.data.images import is_image_source
    from fmloop.evaluate.evaluation import unlabeled_inputs
    from fmloop.models.loading import load
    from fmloop.trust.explain import explain_images, explain_texts

    clf = load(model)
    path = Path(input).expanduser()
    if clf.modality == "image":
        if not path.exists():
            raise typer.BadParameter(f"{input} does not exist: pass an image file or folder.", param_hint="INPUT")
        pixels, names = _images(clf, str(path), text_column, limit)
        explained = explain_images(clf, pixels, target)
        if len(explained) == 1:
            _print_one(explained[0].as_dict() if as_json else None, explained[0], names[0])
            if out:
                _write_heatmap(pixels[0], explained[0], out)
                err_console.print(f"wrote the heatmap to {out}")
        else:
            _write_data(out, [dict(image=n, **e.as_dict()) for n, e in zip(names, explained)], None)
        return
    if path.exists() and not is_image_source(str(path)):
        texts = unlabeled_inputs(clf, str(path), text_column)[0][:limit]
        explained = explain_texts(clf, texts, target)
        from fmloop.trust.report import shaded_words

        _write_data(
            out,
            [dict(text=t, **e.as_dict()) for t, e in zip(texts, explained)],
            "".join(f"<p>{html.escape(str(e.target))} ({e.output:.3f}): {shaded_words(e)}</p>" for e in explained),
        )
        return
    explanation = explain_texts(clf, [input], target)[0]
    _print_one(explanation.as_dict() if as_json else None, explanation, None)


def _images(clf, path: str, image_column: str | None, limit: int):
    from fmloop.data.images import IMAGE_EXT
    from fmloop.evaluate.evaluation import unlabeled_inputs

    if Path(path).is_file() and Path(path).suffix.lower() in IMAGE_EXT:
        return clf.to_pixels([path]), [path]
    pixels, names = unlabeled_inputs(clf, path, image_column)
    return pixels[:limit], names[:limit]


def _print_one(as_json: dict | None, e, name: str | None) -> None:
    from rich.console import Console
    from rich.text import Text

    if as_json is not None:
        typer.echo(json.dumps(as_json, indent=2))
        return
    console = Console()
    answer = f"{e.target}: {e.output:.4f}" if e.target is not None else f"score {e.output:.4f}"
    console.print(
        f"[bold]{answer}[/]  ({e.method}"
        + (f"; convergence delta {e.convergence_delta:.2e})" if e.convergence_delta is not None else ")")
    )
    if e.words:
        top = max(abs(w["score"]) for w in e.words) or 1.0
        line = Text()
        for w in e.words:
            level = int(min(1.0, abs(w["score"]) / top) * 4)
            style = (
                ""
                if level == 0
                else ("on green" if w["score"] > 0 else "on red")
                if level >= 2
                else ("green" if w["score"] > 0 else "red")
            )
            line.append(w["word"], style=style)
            line.append(" ")
        console.print(line)
        ranked = sorted(e.words, key=lambda w: -abs(w["score"]))[:5]
        console.print("strongest: " + ", ".join(f"{w['word']} {w['score']:+.3f}" for w in ranked))
    elif name:
        console.print(f"{name}: heatmap of {len(e.heatmap)}x{len(e.heatmap[0])} (write it with --out FILE.png)")


def _write_data(out: Path | None, rows: list[dict], shaded_html: str | None) -> None:
    from fmloop.core.artifacts import atomic_open, atomic_write_text
    from fmloop.core.html import CSS

    if out is None:
        raise typer.BadParameter("explaining a data file writes JSONL: pass --out FILE.jsonl", param_hint="--out")
    with atomic_open(out, "w") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    err_console.print(f"wrote {len(rows)} explanations to {out}")
    if shaded_html is not None:
        page = out.with_suffix(".html")
        atomic_write_text(
            page,
            f"<!doctype html><html><head><meta charset='utf-8'><title>fmloop explanations</title>"
            f"<style>{CSS}</style></head><body><h1>Explanations</h1><p>Green words raised the answer's "
            f"confidence, red ones lowered it.</p>{shaded_html}</body></html>",
        )
        err_console.print(f"and the words shaded in {page}")


def _write_heatmap(image, e, out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    heat = np.asarray(e.heatmap)
    bound = np.abs(heat).max() or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(6, 3))
    axes[0].imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray" if image.shape[-1] == 1 else None)
    axes[0].set_title(f"{e.target} {e.output:.2f}")
    axes[1].imshow(heat, cmap="PiYG", vmin=-bound, vmax=bound)
    axes[1].set_title("attribution")
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
