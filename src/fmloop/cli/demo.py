"""`fmloop demo`: the main job `make demo` runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from fmloop.cli.common import err_console, setup_logging, user_errors


@user_errors
def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="The demo's pipeline folder."),
    sets: Optional[List[str]] = typer.Option(
        None, "--set", help="Change a stage's value, e.g. pretrain.train.max_time=10m (as fmloop run --set)."
    ),
    force: bool = typer.Option(False, "--force", help="Run every stage again, cached or not."),
):
    """Run the whole loop on real data in at most 15 minutes: clean SST-2, continue a sentence
    encoder's (all-MiniLM-L6-v2) masked-LM pretraining on unlabeled movie reviews, fine-tune it and
    the base as published on 1,000 labels (TF-IDF + logistic regression beside them), compare them,
    export int8, register and serve the champion, let simulated users correct it over HTTP, and
    retrain it through the promotion gate. Ends with a lifecycle report; a second run reuses the
    stages that are unchanged (the pipeline is pipeline/demo.yaml)."""
    from fmloop.pipeline.demo import run_demo, summary

    setup_logging()
    pipeline = run_demo(out, sets or [], force)
    err_console.print(
        "[green]demo finished[/]\n" + "\n".join(summary(pipeline)) + f"\nreport: {pipeline.out / 'report.html'}"
    )
