"""`fmloop finetune`, `fmloop evaluate`, `fmloop predict`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from fmloop.adapt import STRATEGY_NAMES
from fmloop.cli.common import (
    build_stage_config,
    check_model_name,
    check_output,
    err_console,
    exit_if_stopped,
    setup_logging,
    split_overrides,
    track,
    user_errors,
)


@user_errors
def finetune_command(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(
        None,
        "--model",
        help="Base: a Hugging Face model folder, an fmloop run dir, or a preset (random init, needs --model.tokenizer).",
    ),
    data: Optional[str] = typer.Option(
        None, "--data", help="Labeled text: a file, or a folder with train/validation/test files."
    ),
    task: Optional[str] = typer.Option(
        None,
        "--task",
        help="classification, multilabel, regression, or tokens (a tag per word: named entities, from CoNLL or "
        "JSONL tagged data). Default: classification.",
    ),
    strategy: Optional[str] = typer.Option(
        None,
        "--strategy",
        help=f"{STRATEGY_NAMES}. embedding: a frozen encoder's embeddings + logistic regression (C by cross-validation); contrastive: the encoder first adapted on same/different-class pairs (SetFit's method). Default: auto (contrastive for a sentence-embedding base with at most 64 labels per class, else full; printed with the reason).",
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="New run dir to create."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config file; command-line values win over it."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Column holding the text."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Column holding the label."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    max_time: Optional[str] = typer.Option(None, "--max-time", help="Stop after this long: 90s, 30m, 1h30m."),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue the interrupted run in this dir from its last checkpoint."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Fine-tune a base model on labeled text; learning rate, epochs, batch size and max length
    default to values chosen from the data and model size (see docs/finetuning.md).

    Writes RUN/model (loads with transformers or fmloop.load), RUN/metrics.json and RUN/report.html
    (scores on the test split, else validation), RUN/metrics.jsonl, config.yaml and manifest.json.
    Any config value can be set as --section.key=value, e.g. --train.lr=5e-5 --train.epochs=2.
    """
    from fmloop.core.config import deep_merge, load_config, parse_overrides, tree_from_flat
    from fmloop.core.errors import ConfigError
    from fmloop.train.config import FinetuneConfig

    values = tree_from_flat(
        {
            "model.name": model,
            "data.path": data,
            "task": task,
            "strategy": strategy,
            "data.text_column": text_column,
            "data.label_column": label_column,
            "train.max_steps": max_steps,
            "train.max_time": max_time,
        }
    )
    overrides = deep_merge(parse_overrides(split_overrides(ctx.args)), values)
    if resume is not None:
        from fmloop.train.config import resumable_config

        cfg, out = resumable_config(resume, overrides), resume
    else:
        cfg = load_config(FinetuneConfig, config, overrides)
        if out is None:
            raise ConfigError("Pass --out RUN_DIR for the fine-tuned model (or --resume RUN_DIR to continue one).")
        check_output(out, overwrite)
        check_model_name(cfg.model.name)
    setup_logging(verbose)
    from fmloop.train import finetune

    run = finetune.run(cfg, out, resume=resume is not None, overwrite=overwrite)
    track(run)
    manifest = run.read_manifest()
    exit_if_stopped(manifest, f"fmloop finetune --resume {run.path}")
    metrics = manifest["metrics"]
    shown = ", ".join(
        f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("validation_", "test_")) and isinstance(v, float)
    )
    err_console.print(
        f"[green]{manifest['status']}[/] after {metrics['steps']} steps "
        f"({metrics['train_time_s']:.0f}s, {metrics['train_samples_per_s']:.0f} samples/s): {shown}"
    )
    err_console.print(f"model:  {run.model_dir}\nreport: {run.path / 'report.html'}")


@user_errors
def evaluate_command(
    model: str = typer.Argument(..., help="A fine-tuned model folder, run dir or LoRA adapter folder."),
    data: str = typer.Argument(..., help="Labeled data (a folder: its test split, else validation)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Where to write metrics.json and report.html. Default: beside the model."
    ),
    baseline: Optional[str] = typer.Option(
        None, "--baseline", help="Another model to compare on the same examples (paired bootstrap)."
    ),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    label_column: Optional[str] = typer.Option(None, "--label-column"),
    batch_size: int = typer.Option(64, "--batch-size"),
    slices: Optional[str] = typer.Option(
        None,
        "--slices",
        help="Columns of the data to report metrics by, comma-separated (length and language always are).",
    ),
    robustness: bool = typer.Option(
        False,
        "--robustness",
        help="Run the perturbation suite: typos, casing, punctuation, names, numbers (images: noise, blur, ...).",
    ),
    faithfulness: int = typer.Option(
        100, "--faithfulness", help="Texts in the explanations' deletion test; 0 skips it and the explained mistakes."
    ),
):
    """Score a model: accuracy, F1, per-class P/R/F1, confusion matrix, ROC-AUC, calibration (or
    MSE/MAE/R2), with 95% bootstrap intervals; --baseline adds a paired comparison. The report
    also shows metrics per slice, the most confidently wrong examples explained, and how faithful
    the explanations are; --robustness adds the perturbation suite (docs/trust.md)."""
    from rich.console import Console
    from rich.table import Table

    from fmloop.evaluate.config import EvaluateConfig

    cfg = build_stage_config(
        EvaluateConfig,
        model=model,
        data=data,
        baseline=baseline,
        text_column=text_column,
        label_column=label_column,
        batch_size=batch_size,
        slices=[c.strip() for c in (slices or "").split(",") if c.strip()],
        robustness=robustness,
        faithfulness=faithfulness,
    )
    setup_logging()
    from fmloop.evaluate import evaluation

    run = evaluation.run(cfg, out)
    track(run)
    result = json.loads((run.path / "metrics.json").read_text())
    intervals = result["intervals_95"]
    table = Table(title=f"{model} on {result['data']} ({result['n']} examples)")
    table.add_column("metric")
    table.add_column("model", justify="right")
    comparison = result.get("comparison")
    if comparison:
        table.add_column("baseline", justify="right")
    for key, value in result["metrics"].items():
        if not isinstance(value, float):
            continue
        cell = f"{value:.4f}" + (f" [{intervals[key][0]:.4f}, {intervals[key][1]:.4f}]" if key in intervals else "")
        row = [key, cell]
        if comparison:
            b = comparison["baseline_metrics"].get(key)
            bi = comparison["baseline_intervals"].get(key)
            row.append("" if b is None else f"{b:.4f}" + (f" [{bi[0]:.4f}, {bi[1]:.4f}]" if bi else ""))
        table.add_row(*row)
    Console().print(table)
    from fmloop.trust.report import trust_lines

    for line in trust_lines(result.get("trust", {})):
        Console().print(line)
    if comparison:
        t = comparison["test"]
        Console().print(
            f"paired bootstrap on {t['metric']}: model - baseline = {t['difference']:+.4f} "
            f"(95% interval [{t['interval'][0]:+.4f}, {t['interval'][1]:+.4f}], p = {t['p_value']:.4f})"
        )


@user_errors
def predict_command(
    model: str = typer.Argument(..., help="A fine-tuned model folder, run dir or LoRA adapter folder."),
    input: str = typer.Argument(
        ...,
        help="Texts: .txt (one per line), or a CSV/JSONL/parquet file with a text column. Images: a folder, an image parquet file or a CSV/JSONL of paths.",
    ),
    out: Path = typer.Option(..., "--out", help="Output JSONL: one line per input."),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    batch_size: int = typer.Option(64, "--batch-size"),
):
    """Predict labels and probabilities (or scores; for a token model, entities with character
    offsets), one JSON line per input row, in input order."""
    from rich.progress import Progress

    from fmloop.core.artifacts import atomic_open
    from fmloop.evaluate.evaluation import unlabeled_inputs
    from fmloop.models.loading import load

    setup_logging()
    clf = load(model)
    inputs, names = unlabeled_inputs(clf, input, text_column)
    field = "image" if clf.modality == "image" else "text"
    with Progress(console=err_console) as progress:
        task = progress.add_task("predicting", total=len(inputs))
        preds = clf.predict(inputs, batch_size, progress=lambda n: progress.advance(task, n))
    with atomic_open(out, "w") as fh:
        for name, pred in zip(names, preds):
            fh.write(json.dumps({field: name, **pred}) + "\n")
    err_console.print(f"wrote {len(preds)} predictions to {out}")
