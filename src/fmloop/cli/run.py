"""`fmloop run pipeline.yaml`: the loop's stages from one file, cached, resumable."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import List, Optional

import typer

from fmloop.cli.common import err_console, setup_logging, user_errors


@user_errors
def run_command(
    file: Path = typer.Argument(
        ..., help="The pipeline file (YAML): stages, their configs, ${stage.output} references."
    ),
    start: Optional[str] = typer.Option(
        None, "--from", help="Run this stage again and every stage after it; earlier ones are used as they are."
    ),
    only: Optional[str] = typer.Option(None, "--only", help="Run only this stage (again); its inputs must exist."),
    sets: Optional[List[str]] = typer.Option(
        None, "--set", help="Change a value: STAGE.key=value (that stage's config) or vars.NAME=value. Repeatable."
    ),
    out: Optional[Path] = typer.Option(
        None, "--out", help="The pipeline's run folder. Default: the file's out:, else runs/NAME."
    ),
    force: bool = typer.Option(False, "--force", help="Run every stage again, cached or not."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Check the file and say what would run; run nothing."),
):
    """Run a pipeline: each stage runs once, in the order its references need; a stage whose kind,
    config, inputs and fmloop version are unchanged since it last finished is skipped (cached).
    SIGTERM or Ctrl-C stops the pipeline after the current stage's checkpoint; the same command
    continues it. Writes OUT/pipeline.lock (what ran) and OUT/report.html (the lifecycle report)."""
    from fmloop.pipeline import spec

    setup_logging()
    pipeline = spec.load(file, sets or [], out)
    from fmloop.pipeline import runner

    if dry_run:
        for step in runner.plan(pipeline, start, only, force):
            err_console.print(f"{step.stage.name} ({step.stage.kind.name}): {step.action} ({step.why})")
        return
    from fmloop.pipeline.report import write_report

    # the command that continues this run: --from/--only/--force would start the stopped stage afresh
    command = shlex.join(
        ["fmloop", "run", str(file), *(f"--set={s}" for s in sets or []), *(["--out", str(out)] if out else [])]
    )
    try:
        lock = runner.run(pipeline, start, only, force, command)
    finally:
        report = write_report(pipeline)
    ran = sum(1 for s in lock["stages"].values() if s.get("status") == "finished")
    err_console.print(f"[green]pipeline {pipeline.name} finished[/]: {ran} stages in {pipeline.out}\nreport: {report}")
