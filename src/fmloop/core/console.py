"""The one stderr console: fmloop's progress bars, logs and error lines all go through it, so that a
progress bar and a log line never tear each other."""

from __future__ import annotations

from rich.console import Console

err_console = Console(stderr=True)
