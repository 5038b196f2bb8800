"""docs/cli.md and docs/config.md are what the code says about itself: a command, option or config
key added, renamed or re-documented without `make cli-docs` fails here."""

from fmloop.cli.reference import render, render_configs
from tests.conftest import REPO


def test_the_cli_reference_matches_the_commands():
    written = (REPO / "docs" / "cli.md").read_text()
    assert written == render(), "docs/cli.md is out of date: run `make cli-docs`"
    for command in ("finetune", "serve", "retrain", "loop", "feedback audit-export", "drift"):
        assert f"## `fmloop {command}`" in written


def test_the_config_reference_matches_the_stage_configs():
    written = (REPO / "docs" / "config.md").read_text()
    assert written == render_configs(), "docs/config.md is out of date: run `make cli-docs`"
    assert "| `train.lr` |" in written and "## ladder" in written and "## retrain" in written
