"""`fmloop info RUN_DIR`: an artifact's manifest and metrics at a glance."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fmloop.cli.common import user_errors
from fmloop.core import manifest as manifest_io


@user_errors
def info_command(
    run_dir: Optional[Path] = typer.Argument(None, help="A run dir written by an fmloop stage."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
    tracking: bool = typer.Option(
        False, "--tracking", help="Where runs are tracked and how to browse them (mlflow ui)."
    ),
):
    """Show a run's manifest (kind, parents, config hash, data fingerprint, version) and metrics;
    with --tracking, where fmloop keeps its tracking store, registry and feedback database."""
    from fmloop.core.artifacts import RunDir

    if tracking:
        _tracking_info()
        return
    if run_dir is None:
        from fmloop.core.errors import ConfigError

        raise ConfigError("Pass a run dir (fmloop info RUN_DIR), or --tracking.")

    run = RunDir(run_dir)
    if not run.path.is_dir():
        from fmloop.core.errors import FmloopError

        raise FmloopError(f"{run_dir} does not exist.")
    manifest = run.read_manifest()
    if as_json:
        typer.echo(manifest_io.dump(manifest), nl=False)
        return
    console = Console()
    table = Table(title=f"{run.path}", show_header=False)
    for key in manifest_io.SUMMARY_FIELDS:
        if manifest.get(key) is not None:
            table.add_row(key, str(manifest[key]))
    for path in manifest.parent_paths(run.path):
        table.add_row("parent", str(path.resolve()))
    console.print(table)
    metrics = manifest.get("metrics") or {}
    if metrics:
        mt = Table(title="metrics", show_header=False)
        for key, value in metrics.items():
            mt.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
        console.print(mt)
    evals = [r for r in run.read_metrics() if "eval_loss" in r]
    if evals:
        et = Table(title="held-out evaluations")
        et.add_column("step", justify="right")
        et.add_column("loss", justify="right")
        has_ppl = all("eval_ppl" in row for row in evals)
        if has_ppl:
            et.add_column("perplexity", justify="right")
        for row in evals:
            et.add_row(str(row["step"]), f"{row['eval_loss']:.4f}", *([f"{row['eval_ppl']:.2f}"] if has_ppl else []))
        console.print(et)
    for name in ("model", "report.html"):
        if (run.path / name).exists():
            console.print(f"{name}: {run.path / name}")


def _tracking_info() -> None:
    from fmloop.core.home import artifact_root, database_url, home, tracking_uri

    uri = tracking_uri()
    embedded = "MLFLOW_TRACKING_URI" not in os.environ
    table = Table(title="fmloop home", show_header=False)
    table.add_row("FMLOOP_HOME", str(home()))
    table.add_row("tracking and registry", uri + ("  (embedded; MLFLOW_TRACKING_URI overrides)" if embedded else ""))
    table.add_row("feedback store", database_url() + ("" if "FMLOOP_DB" in os.environ else "  (FMLOOP_DB overrides)"))
    table.add_row("tracking", "off (FMLOOP_TRACKING=off)" if os.environ.get("FMLOOP_TRACKING") == "off" else "on")
    Console().print(table)
    browse = f"mlflow ui --backend-store-uri {uri}"
    if embedded:
        browse += f" --default-artifact-root {artifact_root()}"
    typer.echo(f"browse the runs:  {browse}" if embedded else f"browse the runs at {uri}")
