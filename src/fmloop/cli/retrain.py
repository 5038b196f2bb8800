"""`fmloop retrain NAME`: a challenger from users' corrections, promoted only through the gate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer

from fmloop.cli.common import build_stage_config, err_console, setup_logging, split_overrides, user_errors


@user_errors
def retrain_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model whose @champion is retrained."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run dir (default: FMLOOP_HOME/retrain/NAME/TIME)."),
    database: Optional[str] = typer.Option(None, "--db", help="Feedback store URL (default: FMLOOP_DB or SQLite)."),
    start: str = typer.Option("champion", "--start", help="champion (continue it) or base (its base, same recipe)."),
    replay_ratio: float = typer.Option(1.0, "--replay-ratio", help="Replayed training rows per correction."),
    holdout_fraction: float = typer.Option(0.3, "--holdout-fraction", help="Corrections held out to judge."),
    min_corrections: int = typer.Option(20, "--min-corrections", help="Fewer new corrected inputs: nothing to do."),
    margin: float = typer.Option(0.0, "--margin", help="The challenger must win by more than this."),
    alpha: float = typer.Option(0.05, "--alpha", help="Significance level of the paired test."),
    tolerance: float = typer.Option(0.01, "--tolerance", help="Allowed fall on the champion's validation set."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Decide and register, but leave @champion alone."),
    shuffle_labels: bool = typer.Option(False, "--shuffle-labels", help="A deliberately bad challenger (a drill)."),
):
    """Fine-tune a challenger on the corrections since the champion's snapshot plus a replay of its
    training data, score both on the same examples, register it, and promote it only when the gate
    says so; --train.key=value overrides the champion's recipe (e.g. --train.epochs=2)."""
    from fmloop.core.config import parse_overrides
    from fmloop.feedback.config import RetrainConfig
    from fmloop.registry.names import check_name

    check_name(name)
    train = parse_overrides(split_overrides(ctx.args)).get("train", {})
    cfg = build_stage_config(
        RetrainConfig,
        name=name,
        database=database,
        start=start,
        replay_ratio=replay_ratio,
        holdout_fraction=holdout_fraction,
        min_corrections=min_corrections,
        margin=margin,
        alpha=alpha,
        tolerance=tolerance,
        promote=not no_promote,
        shuffle_labels=shuffle_labels,
        train=train,
    )
    from fmloop.core.home import home

    out = out or home() / "retrain" / name / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    setup_logging()
    from fmloop.feedback import retrain

    run = retrain.run(cfg, out)
    manifest = run.read_manifest()
    colour = "green" if manifest["promoted"] else "yellow"
    err_console.print(
        f"[{colour}]{manifest['challenger']}[/]: {manifest['reason']}\nreport: {run.path / 'report.html'}"
    )


@user_errors
def drift_command(
    name: str = typer.Argument(..., help="Registered model whose @champion is checked."),
    database: Optional[str] = typer.Option(None, "--db", help="Feedback store URL (default: FMLOOP_DB or SQLite)."),
    n: int = typer.Option(300, "--n", help="Newest served inputs compared with as many training texts."),
    alpha: float = typer.Option(0.01, "--alpha", help="A test with a p-value below this flags drift."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default: FMLOOP_HOME/drift/NAME-TIME)."),
):
    """Recent served inputs against the training data: embeddings (MMD), predicted labels
    (chi-squared, PSI), confidence (KS). Exits 10 when any test flags drift, for alerting."""
    from fmloop.core.errors import ExitCode
    from fmloop.registry.names import check_name

    check_name(name)
    setup_logging()
    from fmloop.core.home import home
    from fmloop.feedback import monitor

    out = out or home() / "drift" / f"{name}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}"
    result = monitor.check(name, database, n, alpha)
    monitor.write(result, out, name)
    for test in result["tests"]:
        mark = "[red]DRIFT[/]" if test["drifted"] else "[green]ok[/]"
        err_console.print(f"{mark}  {test['name']}: statistic {test['statistic']:.4g}, p = {test['p_value']:.3g}")
    err_console.print(f"report: {out / 'report.html'}")
    if result["drifted"]:
        raise typer.Exit(int(ExitCode.DRIFT))
