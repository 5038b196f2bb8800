"""Run tracking and the model registry, on MLflow: every stage's run logged, versions with lineage
and aliases, and `models:/NAME@ALIAS` references that every command and `fmloop.load` accept.

Importing this package registers the reference resolver and nothing more: MLflow is imported only
when a reference is resolved or a run is tracked.
"""

from __future__ import annotations

from pathlib import Path

from fmloop.core.references import add_resolver

# One process resolves an alias once: a stage that reads `models:/NAME@champion` several times
# uses one version throughout even if the alias moves meanwhile (the server follows aliases itself).
_resolved: dict[str, Path] = {}


def resolve_reference(ref: str) -> Path | None:
    """The local folder of a `models:/` reference; None for anything else."""
    if not ref.startswith("models:/"):
        return None
    if ref not in _resolved:
        from fmloop.registry.models import local_folder  # MLflow loads here, on first use

        _resolved[ref] = local_folder(ref)
    return _resolved[ref]


add_resolver(resolve_reference)
