"""An exclusive lock on a file (flock): held while a block runs, released when the process ends,
even by kill -9, so a crashed holder never leaves a stale lock behind."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[bool]:
    """True while this process holds the lock on `path`; False (at once) when another holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        fh.seek(0)
        fh.truncate()
        fh.write(f"{os.getpid()}\n")  # who holds it, for a curious reader
        fh.flush()
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
