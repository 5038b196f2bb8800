"""The command-line reference, docs/cli.md, generated from the typer app (typer's own Markdown
writer, the one behind `typer ... utils docs`), so it says what the code does:

    make cli-docs          # .venv/bin/python -m fmloop.cli.reference > docs/cli.md

tests/cli/test_reference.py fails when docs/cli.md differs from what this writes.
"""

from __future__ import annotations

import typer
from typer.cli import get_docs_for_click
from typer.core import MARKUP_MODE_KEY

from fmloop.cli.main import app

HEADER = (
    "<!-- Generated from the fmloop command by `make cli-docs`: edit the commands' help in "
    "src/fmloop/cli/, not this file. -->\n\n"
)


def render() -> str:
    command = typer.main.get_command(app)
    context = typer.Context(command)
    context.ensure_object(dict)[MARKUP_MODE_KEY] = app.rich_markup_mode
    return HEADER + get_docs_for_click(obj=command, ctx=context, name="fmloop").strip() + "\n"


if __name__ == "__main__":
    print(render(), end="")
