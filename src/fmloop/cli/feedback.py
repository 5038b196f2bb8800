"""`fmloop feedback audit-export|audit-import|delete|expire`: the audit sample in Label Studio, and
the deletion and retention of what users sent."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from fmloop.cli.common import err_console, setup_logging, user_errors

feedback_app = typer.Typer(
    help="The feedback store: the audit sample in Label Studio; deletion and retention.", no_args_is_help=True
)


def _champion_labels(name: str) -> tuple[list[str], bool]:
    """(the champion's labels, whether it is a tagger)."""
    from fmloop.core.errors import RegistryError
    from fmloop.registry import models
    from fmloop.registry.names import check_name

    champion = models.get(f"models:/{check_name(name)}@{models.CHAMPION}")
    if not champion.labels:
        raise RegistryError(
            f"models:/{name}@{models.CHAMPION} has no class labels: audits are for classifiers and taggers."
        )
    return champion.labels, champion.tags.get("fmloop.task") == "tokens"


@feedback_app.command("audit-export")
@user_errors
def audit_export_command(
    name: str = typer.Argument(..., help="Registered model whose audit sample is exported."),
    out: Path = typer.Option(..., "--out", help="New folder for tasks.json and label_config.xml."),
    limit: int = typer.Option(500, "--limit", min=1, help="At most this many tasks."),
    database: Optional[str] = typer.Option(None, "--db", help="Feedback store URL (default: FMLOOP_DB or SQLite)."),
):
    """Write the sampled predictions that await an audit label as Label Studio tasks (import
    tasks.json into a project set up with label_config.xml)."""
    setup_logging()
    from fmloop.feedback import audit
    from fmloop.feedback.store import Store

    labels, tagger = _champion_labels(name)
    n = audit.export(Store.open(database), name, labels, out, limit, tagger=tagger)
    err_console.print(f"[green]{n} tasks[/] in {out / 'tasks.json'} (labelling interface: {out / 'label_config.xml'})")


@feedback_app.command("audit-import")
@user_errors
def audit_import_command(
    name: str = typer.Argument(..., help="Registered model the audit labels belong to."),
    annotations: Path = typer.Argument(..., help="Label Studio's JSON export (or a CSV with label, prediction_id)."),
    database: Optional[str] = typer.Option(None, "--db", help="Feedback store URL (default: FMLOOP_DB or SQLite)."),
):
    """Store the annotations of an exported audit as audit labels (importing twice stores nothing new)."""
    setup_logging()
    from fmloop.feedback import audit
    from fmloop.feedback.store import Store

    labels, tagger = _champion_labels(name)
    summary = audit.import_labels(Store.open(database), name, labels, str(annotations), tagger=tagger)
    for skip in summary["skipped"][:20]:
        err_console.print(f"[yellow]skipped[/] {skip['where']}: {skip['reason']}")
    err_console.print(
        f"[green]{summary['stored']} audit labels stored[/], {summary['already']} already there, "
        f"{len(summary['skipped'])} skipped"
    )


@feedback_app.command("delete")
@user_errors
def delete_command(
    user: str = typer.Option(..., "--user", help="The identity (its token's name) whose data is deleted."),
    database: Optional[str] = typer.Option(None, "--db", help="Feedback store URL (default: FMLOOP_DB or SQLite)."),
):
    """Delete a user's data: their feedback rows, and the inputs of the predictions their token asked
    for (erased; the rows stay for the counts). Recorded in the store's erasures table."""
    setup_logging()
    from fmloop.feedback.store import Store

    record = Store.open(database).erase_user(user, done_by=_operator())
    err_console.print(
        f"[green]{user!r}[/]: {record.feedback} feedback rows deleted, {record.predictions} prediction inputs erased "
        f"(erasure #{record.id})"
    )


@feedback_app.command("expire")
@user_errors
def expire_command(
    days: float = typer.Option(..., "--days", min=0, help="Erase stored inputs older than this many days."),
    database: Optional[str] = typer.Option(None, "--db", help="Feedback store URL (default: FMLOOP_DB or SQLite)."),
):
    """Apply a retention period once: erase every stored input older than --days (labels, versions
    and times stay for the metrics). `fmloop loop --retention-days N` does it on every pass."""
    setup_logging()
    import datetime as dt

    from fmloop.feedback.store import Store

    cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=days)
    record = Store.open(database).expire_inputs(cutoff, done_by=_operator())
    err_console.print(
        f"[green]{record.predictions + record.feedback} inputs[/] older than {cutoff:%Y-%m-%d %H:%M} UTC erased "
        f"(erasure #{record.id})"
    )


def _operator() -> str:
    """Who ran the command, for the erasures record."""
    import getpass

    try:
        return f"{getpass.getuser()} (fmloop feedback)"
    except (KeyError, OSError):
        return "fmloop feedback"
