"""`fmloop ladder`: where pretraining pays, as accuracy against labels per transfer strategy."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmloop.cli.common import build_stage_config, err_console, setup_logging, split_overrides, user_errors


def _list(text: str | None) -> list[str] | None:
    return [part.strip() for part in text.split(",") if part.strip()] if text else None


@user_errors
def ladder_command(
    ctx: typer.Context,
    base: str = typer.Option(..., "--base", help="The pretrained model: a folder, a run dir, or a preset."),
    data: str = typer.Option(..., "--data", help="Labeled data with train and test splits."),
    budgets: Optional[str] = typer.Option(
        None, "--budgets", help="Training labels per rung: counts or shares, e.g. 100,1000,25000 or 1%,10%,100%."
    ),
    strategies: Optional[str] = typer.Option(
        None,
        "--strategies",
        help="scratch, linear-probe, lora, full, llrd, freeze:K, gradual, embedding, contrastive, dapt (comma-separated).",
    ),
    seeds: Optional[int] = typer.Option(None, "--seeds", help="Seeds per cell; each draws its own label subset."),
    unlabeled: Optional[str] = typer.Option(None, "--unlabeled", help="dapt: extra unlabeled text to pretrain on."),
    scratch_model: Optional[str] = typer.Option(None, "--scratch-model", help="The random-init architecture."),
    tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Tokenizer folder for preset models."),
    test_limit: Optional[int] = typer.Option(
        None, "--test-limit", help="Text: score every cell on this many test rows (a seeded sample)."
    ),
    no_floor: bool = typer.Option(False, "--no-floor", help="Leave out TF-IDF + LR (text) / the small CNN (images)."),
    out: Path = typer.Option(Path("runs/ladder"), "--out", help="Where the cells, table, plot and report go."),
    resume: bool = typer.Option(False, "--resume", help="Keep the finished cells in --out and run the rest."),
):
    """Fine-tune every strategy at every label budget with the same label subsets and seeds, beside
    the classic floor, and write a table and a plot of test accuracy against labels with 95%
    intervals and the time per cell. Extra options set every cell's fine-tuning
    (--train.epochs=3, --train.max-time=2m) or the dapt pretraining (--dapt.train.max-time=10m)."""
    from fmloop.core.config import parse_overrides
    from fmloop.pipeline.ladder import LadderConfig

    extra = parse_overrides(split_overrides(ctx.args))
    unknown = set(extra) - {"train", "dapt"}
    if unknown:
        from fmloop.core.errors import ConfigError

        raise ConfigError(
            f"ladder takes --train.KEY=VALUE and --dapt.SECTION.KEY=VALUE overrides, not --{sorted(unknown)[0]}."
        )
    cfg = build_stage_config(
        LadderConfig,
        base=base,
        data=data,
        budgets=_list(budgets),
        strategies=_list(strategies),
        seeds=seeds,
        unlabeled=unlabeled,
        scratch_model=scratch_model,
        tokenizer=tokenizer,
        floor=False if no_floor else None,
        test_limit=test_limit,
        train=extra.get("train"),
        dapt=extra.get("dapt"),
    )
    setup_logging()
    from fmloop.pipeline.ladder import run

    result = run(cfg, out, resume=resume)
    err_console.print((result.path / "ladder.md").read_text())
    err_console.print(
        f"table: {result.path / 'ladder.csv'}   plot: {result.path / 'ladder.png'}   report: {result.path / 'report.html'}"
    )
