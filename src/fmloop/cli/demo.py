"""`fmloop demo`: the main job `make demo` runs."""

from __future__ import annotations

from pathlib import Path

import typer

from fmloop.cli.common import err_console, user_errors


@user_errors
def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where to write the demo run."),
    max_steps: int = typer.Option(300, "--max-steps", help="Pretraining steps."),
    max_docs: int = typer.Option(20_000, "--max-docs", help="Training documents to use."),
):
    """Run the whole loop built so far on real data: pretrain a small BERT on movie reviews and write its report."""
    from fmloop.cli.common import setup_logging
    from fmloop.pipeline.demo import run_demo

    setup_logging()
    run = run_demo(out, max_steps=max_steps, max_docs=max_docs)
    m = run.read_manifest().get("metrics", {})
    err_console.print(f"[green]demo finished[/]: held-out masked-LM loss {m.get('initial_eval_loss', float('nan')):.3f} "
                      f"-> {m.get('eval_loss', float('nan')):.3f} (perplexity {m.get('eval_ppl', float('nan')):.1f}) "
                      f"in {m.get('steps')} steps at {m.get('tokens_per_s', 0):,.0f} tokens/s")
    err_console.print(f"model:  {run.model_dir}\nreport: {run.path / 'report.html'}\nmore:   fmloop info {run.path}")
