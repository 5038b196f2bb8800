"""Model references that are not paths, such as a registry's `models:/NAME@ALIAS`.

The layers above register resolvers that turn a reference into a local folder (fmloop.registry
registers the MLflow one when fmloop is imported); every name-to-folder lookup
(`fmloop.models.presets.model_dir_of`) asks them first. This module imports nothing heavy.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from fmloop.core.errors import ModelError

_RESOLVERS: list[Callable[[str], Path | None]] = []


def add_resolver(resolver: Callable[[str], Path | None]) -> None:
    """Teach fmloop a new kind of model reference (asked before anything else)."""
    if resolver not in _RESOLVERS:
        _RESOLVERS.insert(0, resolver)


def is_reference(name: str | Path) -> bool:
    return str(name).startswith("models:/") or "://" in str(name)


def resolve_reference(name: str) -> Path:
    """The local folder a reference names, from the first resolver that knows it."""
    for resolver in _RESOLVERS:
        folder = resolver(str(name))
        if folder is not None:
            return folder
    raise ModelError(f"{name} is a model reference that fmloop cannot resolve: pass a model folder or run dir.")
