"""`fmloop retrain NAME`: a challenger from users' corrections, promoted only through the gate."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Optional

import typer

from fmloop.cli.common import build_stage_config, err_console, setup_logging, split_overrides, user_errors
from fmloop.core.errors import ConfigError


def read_trust(path: Path | None) -> dict[str, float]:
    """user -> weight from a YAML mapping, checked: a clear error names the file and the entry."""
    if path is None:
        return {}
    from fmloop.core.config import read_yaml

    weights = read_yaml(path)
    for user, weight in weights.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
            raise ConfigError(f"--trust {path}: the weight of {user!r} is {weight!r}; use a number >= 0.")
    return {str(user): float(weight) for user, weight in weights.items()}


@user_errors
def retrain_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model whose @champion is retrained."),
    out: Optional[Path] = typer.Option(None, "--out", help="Run dir (default: FMLOOP_HOME/retrain/NAME/TIME)."),
    database: Optional[str] = typer.Option(None, "--db", help="Feedback store URL (default: FMLOOP_DB or SQLite)."),
    start: str = typer.Option("champion", "--start", help="champion (continue it) or base (its base, same recipe)."),
    replay_ratio: float = typer.Option(1.0, "--replay-ratio", help="Replayed training rows per correction."),
    accepted_ratio: float = typer.Option(
        1.0, "--accepted-ratio", help="Served answers nobody corrected, trained on, per correction (0: off)."
    ),
    min_corrections: int = typer.Option(20, "--min-corrections", help="Fewer new corrected inputs: nothing to do."),
    strategy: Optional[str] = typer.Option(
        None, "--strategy", help="The challenger's strategy (default: the champion's); embedding: refit the head only."
    ),
    label_check: bool = typer.Option(
        True, "--label-check/--no-label-check", help="Drop corrections confident learning flags as likely wrong."
    ),
    trust: Optional[Path] = typer.Option(None, "--trust", help="YAML of user: weight for their votes (default 1)."),
    high_water: Optional[int] = typer.Option(None, "--high-water", help="Read feedback up to this id (default: all)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the interrupted run in --out."),
    margin: float = typer.Option(0.0, "--margin", help="The challenger must win by more than this."),
    alpha: float = typer.Option(0.05, "--alpha", help="The gate's one-sided level, spent across challengers."),
    tolerance: float = typer.Option(0.03, "--tolerance", help="Non-inferiority margin on the validation set."),
    shadow_n: int = typer.Option(2000, "--shadow-n", help="Newest served inputs the challenger is scored on."),
    shadow_labels: int = typer.Option(
        300, "--shadow-labels", help="Audit labels asked for among the inputs where the two disagree."
    ),
    max_labels: int = typer.Option(600, "--max-labels", help="Labels after which an unproven challenger is refused."),
    no_promote: bool = typer.Option(False, "--no-promote", help="Decide and register, but leave @champion alone."),
    shuffle_labels: bool = typer.Option(False, "--shuffle-labels", help="A deliberately bad challenger (a drill)."),
):
    """Fine-tune a challenger on the corrections and audit labels so far plus a replay of the
    champion's training data, register it as pending and ask for audit labels where it disagrees
    with the champion on recent traffic. While a challenger is pending, judge it on the labels that
    arrived since: promote it, refuse it, or say how many more labels it needs.
    --train.key=value overrides the champion's recipe (e.g. --train.epochs=2)."""
    from fmloop.core.config import parse_overrides
    from fmloop.feedback.config import RetrainConfig
    from fmloop.registry.names import check_name

    check_name(name)
    overrides = parse_overrides(split_overrides(ctx.args))
    unknown = set(overrides) - {"train"}
    if unknown:
        raise ConfigError(
            f"Unknown option section(s) {', '.join(sorted(unknown))}: retrain takes --train.key=value "
            f"(finetune's train keys) beside its own options (fmloop retrain --help)."
        )
    train = overrides.get("train", {})
    cfg = build_stage_config(
        RetrainConfig,
        name=name,
        database=database,
        start=start,
        replay_ratio=replay_ratio,
        accepted_ratio=accepted_ratio,
        min_corrections=min_corrections,
        strategy=strategy,
        label_check=label_check,
        trust=read_trust(trust),
        high_water=high_water,
        margin=margin,
        alpha=alpha,
        tolerance=tolerance,
        shadow_n=shadow_n,
        shadow_labels=shadow_labels,
        max_labels=max_labels,
        promote=not no_promote,
        shuffle_labels=shuffle_labels,
        train=train,
    )
    from fmloop.core.home import home

    if resume and out is None:
        raise ConfigError("--resume continues the run in --out: pass --out RUN_DIR of the interrupted retrain.")
    out = out or home() / "retrain" / name / dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    setup_logging()
    from fmloop.feedback import retrain

    run = retrain.run(cfg, out, resume=resume)
    manifest = run.read_manifest()
    colour = {"promoted": "green", "pending": "cyan"}.get(manifest.get("decision", ""), "yellow")
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


@user_errors
def loop_command(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model whose @champion the loop keeps improving."),
    every: Optional[str] = typer.Option(None, "--every", help="Run a pass every 30m, 1h, 1d... (default: one pass)."),
    database: Optional[str] = typer.Option(None, "--db", help="Feedback store URL (default: FMLOOP_DB or SQLite)."),
    min_new: int = typer.Option(100, "--min-new", help="New feedback rows that call for a retrain."),
    drift: bool = typer.Option(True, "--drift/--no-drift", help="Check drift each pass (drift retrains sooner)."),
    drift_n: int = typer.Option(300, "--drift-n", help="Newest served inputs the drift check compares."),
    drift_alpha: float = typer.Option(0.01, "--drift-alpha", help="Drift test p-value below this flags drift."),
    retention_days: Optional[float] = typer.Option(
        None, "--retention-days", help="Each pass erases stored inputs older than this (recorded)."
    ),
):
    """Check the new feedback and the drift, and retrain through the gate when either calls for it.
    Safe from cron: a lock keeps passes from overlapping, a pass with nothing new does nothing, and
    an interrupted retrain is continued by the next pass. --retrain.key=value sets retrain options
    (e.g. --retrain.shadow_labels=200 --retrain.train.epochs=2)."""
    import signal
    import threading

    from fmloop.core.config import parse_duration, parse_overrides
    from fmloop.feedback.config import LoopConfig, RetrainConfig
    from fmloop.registry.names import check_name

    check_name(name)
    overrides = parse_overrides(split_overrides(ctx.args))
    unknown = set(overrides) - {"retrain"}
    if unknown:
        raise ConfigError(f"Unknown option section(s) {', '.join(sorted(unknown))}: loop takes --retrain.key=value.")
    cfg = build_stage_config(
        LoopConfig,
        name=name,
        database=database,
        min_new=min_new,
        drift=drift,
        drift_n=drift_n,
        drift_alpha=drift_alpha,
        retention_days=retention_days,
        retrain=overrides.get("retrain", {}),
    )
    build_stage_config(RetrainConfig, name=name, **cfg.retrain)  # a wrong retrain option fails now, not in an hour
    setup_logging()
    from fmloop.feedback import loop

    try:
        interval = parse_duration(every) if every else None
    except ValueError as err:
        raise ConfigError(f"--every: {err}") from None
    stop = threading.Event()
    if interval:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
    colours = {
        "retrained": "green",
        "resumed": "green",
        "reviewed": "green",
        "nothing": "dim",
        "busy": "yellow",
        "failed": "red",
    }
    while True:
        outcome = loop.tick(cfg)
        colour = colours.get(outcome["action"], "yellow")
        err_console.print(f"[{colour}]{outcome['action']}[/]: {outcome['reason']}", highlight=False)
        if outcome.get("run"):
            err_console.print(f"report: {outcome['run']}/report.html")
        if interval is None or outcome["action"] == "interrupted" or stop.wait(interval):
            break
    # the last pass decides the exit code: a failed retrain is never a silent 0 (cron alerts on it)
    if outcome["action"] == "failed":
        raise typer.Exit(outcome["exit_code"])
    if outcome["action"] == "interrupted":
        from fmloop.core import stop as stop_request
        from fmloop.core.errors import signal_exit_code

        raise typer.Exit(int(signal_exit_code(stop_request.requested())))
