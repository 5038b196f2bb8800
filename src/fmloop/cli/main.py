"""The `fmloop` command."""

from __future__ import annotations

import typer

from fmloop import __version__
from fmloop.cli.common import EXTRA
from fmloop.cli.compress import (
    compare_command,
    distill_command,
    ensemble_command,
    export_command,
    prune_command,
    quantize_command,
)
from fmloop.cli.data import data_app, label_app
from fmloop.cli.demo import demo_command
from fmloop.cli.feedback import feedback_app
from fmloop.cli.finetune import evaluate_command, finetune_command, predict_command
from fmloop.cli.info import info_command
from fmloop.cli.ladder import ladder_command
from fmloop.cli.pretrain import pretrain_command
from fmloop.cli.registry import alias_command, models_app, register_command, rollback_command
from fmloop.cli.retrain import drift_command, loop_command, retrain_command
from fmloop.cli.run import run_command
from fmloop.cli.serve import serve_command
from fmloop.cli.tokens import tokens_app
from fmloop.cli.trust import explain_command

app = typer.Typer(
    name="fmloop",
    help="fmloop: pretrain a foundation model on your own data, adapt it, compress it, serve it, improve it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # docstrings are wrapped at 110 columns; markdown mode joins a paragraph's lines again
    rich_markup_mode="markdown",
)


app.command("pretrain", context_settings=EXTRA)(pretrain_command)
app.command("finetune", context_settings=EXTRA)(finetune_command)
app.command("evaluate")(evaluate_command)
app.command("predict")(predict_command)
app.command("explain")(explain_command)
app.command("distill", context_settings=EXTRA)(distill_command)
app.command("prune", context_settings=EXTRA)(prune_command)
app.command("quantize")(quantize_command)
app.command("export")(export_command)
app.command("ensemble")(ensemble_command)
app.command("compare-models")(compare_command)
app.add_typer(data_app, name="data")
app.add_typer(label_app, name="label")
app.command("register")(register_command)
app.command("alias")(alias_command)
app.command("rollback")(rollback_command)
app.add_typer(models_app, name="models")
app.command("serve")(serve_command)
app.add_typer(tokens_app, name="tokens")
app.command("retrain", context_settings=EXTRA)(retrain_command)
app.command("drift")(drift_command)
app.command("loop", context_settings=EXTRA)(loop_command)
app.add_typer(feedback_app, name="feedback")
app.command("run")(run_command)
app.command("ladder", context_settings=EXTRA)(ladder_command)
app.command("info")(info_command)
app.command("demo")(demo_command)


def _version(value: bool):
    if value:
        typer.echo(f"fmloop {__version__}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version.")):
    """fmloop: the foundation-model loop in one tool."""


def run() -> None:
    app()
