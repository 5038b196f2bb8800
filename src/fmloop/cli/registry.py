"""`fmloop register`, `fmloop models list|show`, `fmloop alias`."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from fmloop.cli.common import err_console, setup_logging, user_errors

models_app = typer.Typer(help="Registered models: list them, show one's versions.", no_args_is_help=True)


@user_errors
def register_command(
    run: Path = typer.Argument(..., help="A finished fmloop run dir (or its model/ folder)."),
    name: str = typer.Option(..., "--name", help="Registered model name: letters, digits, '.', '_', '-'."),
    description: Optional[str] = typer.Option(None, "--description", help="A line kept with the version."),
    alias: Optional[str] = typer.Option(None, "--alias", help="Also point this alias (e.g. champion) at it."),
):
    """Register a run's model as a new version: its files are copied into the registry's store, with
    its lineage (parent versions, data fingerprint, metrics, fmloop version) as tags."""
    from fmloop.registry.names import check_alias, check_name

    check_name(name)
    if alias:
        check_alias(alias)
    setup_logging()
    from fmloop.registry import models

    version = models.register(run, name, description)
    if alias:
        models.set_alias(name, alias, version.version)
    parents = version.tags.get("fmloop.parent_versions") or "none registered"
    err_console.print(
        f"[green]registered[/] {version.reference}{f' as @{alias}' if alias else ''} "
        f"(kind {version.tags.get('fmloop.kind')}, parents: {parents})"
    )


@user_errors
def alias_command(
    name: str = typer.Argument(..., help="Registered model name."),
    alias: str = typer.Argument(..., help="Alias to set, e.g. champion."),
    version: int = typer.Argument(..., help="Version the alias points at from now on."),
):
    """Point an alias at a version; servers that follow the alias switch to it by themselves. Moving
    @champion keeps the version it leaves as @previous, so `fmloop rollback NAME` undoes it."""
    from fmloop.registry.names import check_alias, check_name

    check_name(name)
    check_alias(alias)
    setup_logging()
    from fmloop.registry import models

    before = {a: v.version for v in models.versions(name) for a in v.aliases}.get(alias)
    models.set_alias(name, alias, version)
    moved = f" (was {before})" if before and before != version else ""
    err_console.print(f"[green]models:/{name}@{alias}[/] -> version {version}{moved}")


@models_app.command("list")
@user_errors
def models_list_command(as_json: bool = typer.Option(False, "--json", help="Print JSON.")):
    """Every registered model with its number of versions and its aliases."""
    setup_logging()
    from fmloop.registry import models

    found = models.list_models()
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = Table(title="registered models")
    for col in ("name", "versions", "latest", "aliases"):
        table.add_column(col)
    for m in found:
        aliases = ", ".join(f"@{a} -> {v}" for a, v in m["aliases"].items())
        table.add_row(m["name"], str(m["versions"]), str(m["latest"]), aliases)
    Console().print(table if found else "no registered models yet: fmloop register RUN --name NAME")


@models_app.command("show")
@user_errors
def models_show_command(
    name: str = typer.Argument(..., help="Registered model name."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
):
    """A model's versions: aliases, kind, headline metrics, parents and the run each came from."""
    setup_logging()
    from fmloop.registry import models

    found = models.versions(name)
    if as_json:
        rows = [
            {"version": v.version, "aliases": list(v.aliases), "metrics": v.metrics, "tags": v.tags, "source": v.source}
            for v in found
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"models:/{name}")
    for col in ("version", "aliases", "kind", "metrics", "parents", "created", "run"):
        table.add_column(col, overflow="fold")
    for v in found:
        headline = ("validation_accuracy", "test_accuracy", "validation_mse", "test_mse", "validation_micro_f1")
        shown = ", ".join(f"{k} {x:.4f}" for k, x in v.metrics.items() if k in headline)
        created = dt.datetime.fromtimestamp(v.created / 1000).strftime("%Y-%m-%d %H:%M")
        table.add_row(
            str(v.version),
            " ".join(f"@{a}" for a in v.aliases),
            v.tags.get("fmloop.kind", ""),
            shown,
            v.tags.get("fmloop.parent_versions", ""),
            created,
            v.tags.get("fmloop.run_dir", ""),
        )
    Console().print(table)


@user_errors
def rollback_command(name: str = typer.Argument(..., help="Registered model name.")):
    """Put the previous champion back (models:/NAME@previous becomes @champion); servers that
    follow @champion switch back by themselves."""
    from fmloop.registry.names import check_name

    check_name(name)
    setup_logging()
    from fmloop.registry import models

    restored, demoted = models.rollback(name)
    err_console.print(
        f"[green]models:/{name}@champion[/] -> version {restored.version} (version {demoted.version} is @previous)"
    )
