"""`fmloop tokens add|revoke|list`: the identities a server knows, with their roles, in a tokens file
of hashes (the server re-reads it when it changes)."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from fmloop.cli.common import err_console, user_errors

tokens_app = typer.Typer(help="API tokens: identities and roles for `fmloop serve --tokens`.", no_args_is_help=True)

FILE_HELP = "The tokens file (`fmloop serve --tokens`); default FMLOOP_TOKENS_FILE."


def _file(path: Path | None) -> Path:
    from fmloop.core.errors import ConfigError

    given = path or (Path(os.environ["FMLOOP_TOKENS_FILE"]) if os.environ.get("FMLOOP_TOKENS_FILE") else None)
    if given is None:
        raise ConfigError("name the tokens file: --file PATH (or set FMLOOP_TOKENS_FILE)")
    return given.expanduser()


@tokens_app.command("add")
@user_errors
def add_command(
    name: str = typer.Argument(..., help="The identity: rate limits, votes and deletion go by it."),
    role: str = typer.Option(
        "user", "--role", help="user (corrections), labeller (+ audit labels, new inputs), admin."
    ),
    file: Path = typer.Option(None, "--file", help=FILE_HELP),
):
    """Create a token for NAME (replacing its earlier one) and print it once: only its hash is kept."""
    from fmloop.serve.identity import add_token

    path = _file(file)
    token = add_token(path, name, role)
    err_console.print(f"[green]{name}[/] ({role}) added to {path}; its token (shown once):")
    typer.echo(token)  # alone on stdout: TOKEN=$(fmloop tokens add ...) works


@tokens_app.command("revoke")
@user_errors
def revoke_command(
    name: str = typer.Argument(..., help="The identity whose token stops working."),
    file: Path = typer.Option(None, "--file", help=FILE_HELP),
):
    """Remove NAME's token; a running server stops accepting it at its next request."""
    from fmloop.core.errors import ConfigError
    from fmloop.serve.identity import revoke_token

    path = _file(file)
    if not revoke_token(path, name):
        raise ConfigError(f"{path} has no identity {name!r}; `fmloop tokens list --file {path}` shows who it has")
    err_console.print(f"[green]{name}[/] revoked in {path}")


@tokens_app.command("list")
@user_errors
def list_command(file: Path = typer.Option(None, "--file", help=FILE_HELP)):
    """The identities and their roles (the tokens themselves are not stored)."""
    from fmloop.serve.identity import list_tokens

    for name, role in list_tokens(_file(file)):
        typer.echo(f"{name}\t{role}")
