"""`fmloop pretrain`: self-supervised pretraining on unlabeled text."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmloop.cli.common import PRESET_NAMES, err_console, exit_if_stopped, split_overrides, track, user_errors


@user_errors
def pretrain_command(
    ctx: typer.Context,
    data: Optional[str] = typer.Option(
        None,
        "--data",
        help="Text: .txt/.csv/.tsv/.jsonl(.gz)/.parquet, a folder, a save_to_disk folder or a hub id. Images: a folder of images, an image parquet file, a CSV/JSONL of image paths.",
    ),
    modality: Optional[str] = typer.Option(
        None, "--modality", help="text or image. Default: image when the data holds images, else text."
    ),
    objective: Optional[str] = typer.Option(
        None,
        "--objective",
        help="Text: mlm (masked LM, BERT-style, the default) or clm (next-token, GPT-style). Images: simclr (contrastive, the default) or mae (masked autoencoder, ViT only).",
    ),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        help=f"Preset ({PRESET_NAMES}) or a local Hugging Face model folder to continue pretraining. Default: bert-mini / vit-mini.",
    ),
    out: Optional[Path] = typer.Option(None, "--out", help="New run dir to create."),
    config: Optional[Path] = typer.Option(None, "--config", help="YAML config file; command-line values win over it."),
    column: Optional[str] = typer.Option(None, "--column", help="Text column of a CSV/JSONL/parquet source."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Stop after this many optimizer steps."),
    max_time: Optional[str] = typer.Option(
        None, "--max-time", help="Stop (and checkpoint) after this long: 90s, 30m, 1h30m."
    ),
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue the run in this dir from its last checkpoint."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out folder."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging."),
):
    """Pretrain a language model on unlabeled text, or an image backbone on unlabeled images.

    Writes RUN/model (a standard Hugging Face folder with safetensors weights and tokenizer),
    RUN/metrics.jsonl, RUN/report.html, RUN/config.yaml, RUN/manifest.json and RUN/checkpoints.
    SIGTERM or Ctrl-C finish the current step, checkpoint and exit 0; --resume continues exactly.

    Any config value can be set after the options as --section.key=value, e.g. --train.lr=3e-4
    --train.batch_size=64 --model.dropout=0.1 --tokenizer.vocab_size=16000 (see docs/pretraining.md).
    """
    from fmloop.cli.common import check_output, setup_logging
    from fmloop.core.artifacts import RunDir
    from fmloop.core.config import deep_merge, load_config, parse_overrides, tree_from_flat
    from fmloop.train.config import PretrainConfig

    cli_values = tree_from_flat(
        {
            "modality": modality,
            "objective": objective,
            "data.path": data,
            "data.column": column,
            "model.name": model,
            "train.max_steps": max_steps,
            "train.max_time": max_time,
        }
    )
    overrides = deep_merge(parse_overrides(split_overrides(ctx.args)), cli_values)
    if resume is not None:
        # The run's own resolved config is the base; command-line values (e.g. a larger
        # --max-steps) go on top of it.
        from fmloop.core.errors import FmloopError, ResumeError

        base = RunDir(resume)
        if not base.config_path.exists():
            raise ResumeError(
                f"{resume} cannot be resumed: it has no config.yaml (not an fmloop run dir, or it failed before starting)."
            )
        try:
            base.read_manifest()
        except FmloopError as err:
            raise ResumeError(f"{resume} cannot be resumed: {err}") from None
        saved = base.read_config()
        cfg = load_config(PretrainConfig, None, deep_merge(saved, overrides))
        setup_logging(verbose)
        from fmloop.train import pretrain

        run = pretrain.run(cfg, resume, resume=True)
        track(run)
    else:
        cfg = load_config(PretrainConfig, config, overrides)
        if out is None:
            from fmloop.core.errors import ConfigError

            raise ConfigError("Pass --out RUN_DIR for a new run (or --resume RUN_DIR to continue one).")
        check_output(out, overwrite)
        setup_logging(verbose)
        from fmloop.train import pretrain

        run = pretrain.run(cfg, out, overwrite=overwrite)
        track(run)
    manifest = run.read_manifest()
    exit_if_stopped(manifest, f"fmloop pretrain --resume {run.path}")
    m = manifest.get("metrics", {})
    err_console.print(
        f"[green]{manifest['status']}[/] after {m.get('steps')} steps"
        + (f" ({manifest['stop_reason']})" if manifest.get("stop_reason") else "")
        + (f"; held-out loss {m['initial_eval_loss']:.3f} -> {m['eval_loss']:.3f}" if "eval_loss" in m else "")
        + (f" (perplexity {m['eval_ppl']:.1f})" if "eval_ppl" in m else "")
    )
    err_console.print(f"model: {run.model_dir}\nreport: {run.path / 'report.html'}")
