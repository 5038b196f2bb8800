"""`fmloop demo`: the main job `make demo` runs."""

from __future__ import annotations

from pathlib import Path

import typer

from fmloop.cli.common import err_console, user_errors


@user_errors
def demo_command(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Where to write the demo runs."),
    max_steps: int = typer.Option(300, "--max-steps", help="Pretraining steps."),
    max_docs: int = typer.Option(20_000, "--max-docs", help="Unlabeled documents to pretrain on."),
):
    """Run the loop built so far on real data: pretrain a small BERT on movie reviews, fine-tune it
    on sentiment labels, and compare it with the same model fine-tuned from random weights."""
    from fmloop.cli.common import setup_logging
    from fmloop.pipeline.demo import run_demo

    setup_logging()
    result = run_demo(out, max_steps=max_steps, max_docs=max_docs)
    m = result["pretrain"].read_manifest()["metrics"]
    ev = result["evaluation"]
    test = ev["comparison"]["test"]
    name = test["metric"]
    err_console.print(
        f"[green]demo finished[/] in {result['out']}\n"
        f"pretraining: held-out masked-LM loss {m.get('initial_eval_loss', float('nan')):.3f} -> "
        f"{m.get('eval_loss', float('nan')):.3f} in {m.get('steps')} steps at {m.get('tokens_per_s', 0):,.0f} tokens/s\n"
        f"sentiment {name} on {ev['data']}: pretrained {ev['metrics'][name]:.4f} vs from scratch "
        f"{ev['comparison']['baseline_metrics'][name]:.4f} (difference {test['difference']:+.4f}, "
        f"95% interval [{test['interval'][0]:+.4f}, {test['interval'][1]:+.4f}], p = {test['p_value']:.3f})\n"
        f"report: {result['out'] / 'evaluation' / 'report.html'}"
    )
