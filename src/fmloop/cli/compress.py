"""`fmloop distill`, `quantize`, `export`, `ensemble`, `prune`, `compare-models`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from fmloop.cli.common import (
    build_stage_config,
    check_output,
    err_console,
    exit_if_stopped,
    setup_logging,
    split_overrides,
    track,
    user_errors,
)

DATA_HELP = (
    "Labeled data to check the new model against its parent (validation split). Default: the data of the model's run."
)


def _parity_line(manifest: dict) -> str:
    p = manifest.get("parity") or {}
    if not p:
        return ""
    acc = f"; accuracy {p['accuracy']:.4f} vs parent {p['parent_accuracy']:.4f}" if "accuracy" in p else ""
    return f"parity on {p['n']} examples: agreement {p['agreement']:.2%}, max |logit diff| {p['max_abs_diff']:.3g}{acc}"


@user_errors
def export_command(
    model: str = typer.Argument(..., help="A fine-tuned model folder or run dir."),
    out: Path = typer.Option(..., "--out", help="New run dir; the ONNX model goes to OUT/model."),
    format: str = typer.Option("onnx", "--format", help="Export format (onnx)."),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    min_agreement: float = typer.Option(
        0.99, "--min-agreement", help="Fail when fewer predictions than this agree with the PyTorch model."
    ),
    max_abs_diff: Optional[float] = typer.Option(
        None, "--max-abs-diff", help="Also fail when any logit differs by more than this."
    ),
    opset: int = typer.Option(17, "--opset"),
    limit: Optional[int] = typer.Option(None, "--limit", help="Check on at most this many examples (seeded sample)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
):
    """Export to ONNX (dynamic batch and sequence axes, tokenizer and labels beside it), then check
    it against the PyTorch model on real examples; nothing is saved when they disagree."""
    from fmloop.compress.config import ExportConfig

    cfg = build_stage_config(
        ExportConfig,
        model=model,
        format=format,
        data=data,
        min_agreement=min_agreement,
        max_abs_diff=max_abs_diff,
        opset=opset,
        limit=limit,
    )
    check_output(out, overwrite)
    setup_logging()
    from fmloop.compress import onnx_export

    run = onnx_export.run(cfg, out, overwrite=overwrite)
    track(run)
    err_console.print(f"[green]exported[/] {run.model_dir}  ({_parity_line(run.read_manifest())})")


@user_errors
def quantize_command(
    model: str = typer.Argument(..., help="A fine-tuned model folder or run dir (fp32)."),
    out: Path = typer.Option(..., "--out", help="New run dir; the int8 model goes to OUT/model."),
    backend: str = typer.Option("onnx", "--backend", help="onnx (ONNX Runtime int8) or torch (torch.ao dynamic int8)."),
    mode: str = typer.Option(
        "dynamic",
        "--mode",
        help="dynamic (weights int8, activations on the fly) or static (activations calibrated; onnx only).",
    ),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP + " Static mode calibrates on its train split."),
    calibration_size: int = typer.Option(
        256, "--calibration-size", help="Training examples used to calibrate static int8."
    ),
    min_agreement: float = typer.Option(
        0.97, "--min-agreement", help="Fail when fewer predictions than this agree with the fp32 model."
    ),
    limit: Optional[int] = typer.Option(None, "--limit", help="Check on at most this many examples (seeded sample)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
):
    """int8-quantize the linear layers, then check the result against the fp32 model."""
    from fmloop.compress.config import QuantizeConfig

    cfg = build_stage_config(
        QuantizeConfig,
        model=model,
        data=data,
        backend=backend,
        mode=mode,
        calibration_size=calibration_size,
        min_agreement=min_agreement,
        limit=limit,
    )
    check_output(out, overwrite)
    setup_logging()
    from fmloop.compress import quantize

    run = quantize.run(cfg, out, overwrite=overwrite)
    track(run)
    err_console.print(f"[green]quantized[/] {run.model_dir}  ({_parity_line(run.read_manifest())})")


@user_errors
def ensemble_command(
    models: List[str] = typer.Argument(..., help="Two or more models with the same task and labels."),
    out: Path = typer.Option(..., "--out", help="New run dir; the ensemble goes to OUT/model."),
    method: str = typer.Option(
        "mean", "--method", help="vote, mean (of probabilities) or weighted (weights fit on validation)."
    ),
    data: Optional[str] = typer.Option(
        None, "--data", help="Labeled data whose validation split fits the weights (weighted)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
):
    """Combine models into one artifact that evaluate and predict load like any model."""
    from fmloop.compress.config import EnsembleConfig

    cfg = build_stage_config(EnsembleConfig, models=list(models), method=method, data=data)
    check_output(out, overwrite)
    setup_logging()
    from fmloop.compress import ensemble

    run = ensemble.run(cfg, out, overwrite=overwrite)
    track(run)
    weights = run.read_manifest()["weights"]
    err_console.print(f"[green]ensemble[/] of {len(models)} ({method}, weights {weights}): {run.model_dir}")


@user_errors
def distill_command(
    ctx: typer.Context,
    teacher: List[str] = typer.Option(..., "--teacher", help="Teacher model (repeat for an ensemble of teachers)."),
    student: str = typer.Option(
        ...,
        "--student",
        help="Student: a preset (e.g. bert-tiny, built with the teacher's tokenizer) or a model folder.",
    ),
    data: str = typer.Option(..., "--data", help="Labeled data, as for finetune."),
    out: Path = typer.Option(..., "--out", help="New run dir."),
    task: Optional[str] = typer.Option(None, "--task"),
    unlabeled: Optional[str] = typer.Option(None, "--unlabeled", help="Extra unlabeled text the teacher labels."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Softmax temperature (default 2)."),
    alpha: Optional[float] = typer.Option(
        None, "--alpha", help="Weight of the teacher's soft targets, 0..1 (default 0.7)."
    ),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    max_time: Optional[str] = typer.Option(None, "--max-time", help="Stop after this long: 90s, 30m, 1h30m."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config file; command-line values win over it."),
    verbose: bool = typer.Option(False, "--verbose", "-v"),
):
    """Train a small student on the teacher's soft targets (and the labels) through the
    fine-tuning loop; any fine-tuning setting works, e.g. --train.epochs=6."""
    from fmloop.compress.config import DistillConfig
    from fmloop.core.config import deep_merge, load_config, parse_overrides, tree_from_flat

    values = tree_from_flat(
        {
            "model.name": student,
            "data.path": data,
            "task": task,
            "distill.unlabeled": unlabeled,
            "distill.temperature": temperature,
            "distill.alpha": alpha,
            "train.max_steps": max_steps,
            "train.max_time": max_time,
        }
    )
    values["teacher"] = list(teacher)
    cfg = load_config(DistillConfig, config, deep_merge(parse_overrides(split_overrides(ctx.args)), values))
    check_output(out, overwrite)
    setup_logging(verbose)
    from fmloop.compress import distill

    run = distill.run(cfg, out, overwrite=overwrite)
    track(run)
    exit_if_stopped(run.read_manifest(), "the same command with --overwrite (distillation starts again)")
    metrics = run.read_manifest()["metrics"]
    shown = ", ".join(
        f"{k} {v:.4f}" for k, v in metrics.items() if k.startswith(("validation_", "test_")) and isinstance(v, float)
    )
    err_console.print(f"[green]distilled[/] in {metrics['train_time_s']:.0f}s: {shown}\nmodel:  {run.model_dir}")


@user_errors
def compare_command(
    models: List[str] = typer.Argument(..., help="Models to compare (folders, run dirs, ONNX exports, ensembles)."),
    data: str = typer.Option(..., "--data", help="Labeled data (a folder: its test split, else validation)."),
    out: Path = typer.Option(Path("compare"), "--out", help="Folder for compare.json, compare.md and compare.png."),
    n_single: int = typer.Option(100, "--latency-samples", help="Single-example calls timed per model."),
    threads: Optional[int] = typer.Option(None, "--threads", help="torch threads (ONNX Runtime uses its default)."),
):
    """Accuracy (95% interval), parameters, size on disk, latency p50/p95 at batch 1 and throughput
    at batch 32, with each model against its parent when both are listed."""
    from rich.console import Console
    from rich.table import Table

    from fmloop.compress.compare import compare_models

    setup_logging()
    result = compare_models(models, data, out, n_single=n_single, threads=threads)
    rows = result["rows"]
    table = Table(title=f"{result['data']} ({rows[0]['n']} examples)")
    for col in ("model", rows[0]["metric"], "params", "MB", "p50 ms", "p95 ms", "b32/s", "vs parent"):
        table.add_column(col, justify="left" if col in ("model", "vs parent") else "right", overflow="fold")
    for r in rows:
        vs = r.get("vs_parent")
        table.add_row(
            r["model"],
            f"{r['value']:.4f}",
            f"{r['parameters'] / 1e6:.2f}M" if r["parameters"] else "?",
            f"{r['size_mb']:.1f}",
            f"{r['latency_p50_ms']:.2f}",
            f"{r['latency_p95_ms']:.2f}",
            f"{r['throughput_b32_per_s']:.0f}",
            f"{vs['metric_change']:+.4f}, {vs['speedup_b1']:.2f}x b1, {vs['speedup_b32']:.2f}x b32" if vs else "",
        )
    Console().print(table)
    err_console.print(f"wrote {out}/compare.md, compare.json, compare.png")


@user_errors
def prune_command(
    ctx: typer.Context,
    model: str = typer.Argument(..., help="A fine-tuned model folder or run dir."),
    out: Path = typer.Option(..., "--out", help="New run dir."),
    sparsity: float = typer.Option(
        0.5,
        "--sparsity",
        help="Fraction of body weights (magnitude), feed-forward channels (structured) or attention heads per layer (heads) to remove, in (0, 1).",
    ),
    method: str = typer.Option(
        "magnitude",
        "--method",
        help="magnitude (global, unstructured: smaller to store, not faster), structured (feed-forward channels) or heads (attention heads): both really smaller and faster.",
    ),
    data: Optional[str] = typer.Option(
        None, "--data", help="Labeled data for the recovery fine-tune. Default: the data of the model's run."
    ),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    max_time: Optional[str] = typer.Option(None, "--max-time", help="Stop after this long: 90s, 30m, 1h30m."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config file; command-line values win over it."),
):
    """Prune, then recover with a short fine-tune (default one epoch; any fine-tuning setting
    works, e.g. --train.epochs=2)."""
    from fmloop.compress.config import PruneConfig
    from fmloop.core.config import deep_merge, load_config, parse_overrides, tree_from_flat

    values = tree_from_flat(
        {
            "prune.sparsity": sparsity,
            "prune.method": method,
            "data.path": data,
            "model.name": model,
            "train.max_steps": max_steps,
            "train.max_time": max_time,
        }
    )
    cfg = load_config(PruneConfig, config, deep_merge(parse_overrides(split_overrides(ctx.args)), values))
    check_output(out, overwrite)
    setup_logging()
    from fmloop.compress import prune

    run = prune.run(cfg, out, overwrite=overwrite)
    track(run)
    manifest = run.read_manifest()
    exit_if_stopped(manifest, "the same command with --overwrite (pruning starts again)")
    p, metrics = manifest["pruning"], manifest["metrics"]
    shown = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k.endswith("_accuracy") or k.endswith("_mse"))
    detail = (
        f"sparsity {p['sparsity_saved']:.1%}"
        if "sparsity_saved" in p
        else f"attention heads per layer {p['attention_heads']}, {p['parameters_after'] / 1e6:.2f}M parameters"
        if "attention_heads" in p
        else f"intermediate size {p['intermediate_size']}, {p['parameters_after'] / 1e6:.2f}M parameters"
    )
    err_console.print(
        f"[green]pruned[/] ({p['method']}, {detail}); before recovery {p['pruned_validation_before_recovery']:.4f}, "
        f"parent {p['parent_validation']:.4f}; after: {shown}\nmodel:  {run.model_dir}"
    )
