"""docs/cli.md is what the typer app says about itself: a command or option added, renamed or
re-documented without `make cli-docs` fails here."""

from fmloop.cli.reference import render
from tests.conftest import REPO


def test_the_cli_reference_matches_the_commands():
    written = (REPO / "docs" / "cli.md").read_text()
    assert written == render(), "docs/cli.md is out of date: run `make cli-docs`"
    for command in ("finetune", "serve", "retrain", "loop", "feedback audit-export", "drift"):
        assert f"## `fmloop {command}`" in written
