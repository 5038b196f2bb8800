"""Registered model names, aliases and `models:/` references: checked without importing MLflow or
torch, so the command line answers a typo at once."""

from __future__ import annotations

import re

from fmloop.core.errors import ConfigError

REFERENCE = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/@]+)|/(?P<version>\d+))$")
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}$")
ALIAS = re.compile(r"^[A-Za-z][A-Za-z0-9_\-]{0,63}$")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise ConfigError(
            f"Model name {name!r} is not valid: use letters, digits, '.', '_' and '-' (up to 100 characters)."
        )
    return name


def check_alias(alias: str) -> str:
    if not ALIAS.match(alias) or alias == "latest":
        raise ConfigError(f"Alias {alias!r} is not valid: a letter, then letters, digits, '_' and '-'; not 'latest'.")
    return alias


def parse_reference(ref: str) -> tuple[str, str | None, int | None]:
    """'models:/sst2@champion' -> ('sst2', 'champion', None); 'models:/sst2/3' -> ('sst2', None, 3)."""
    match = REFERENCE.match(ref)
    if not match:
        raise ConfigError(f"{ref!r} is not a registry reference: write models:/NAME@ALIAS or models:/NAME/VERSION.")
    name, alias, version = match["name"], match["alias"], match["version"]
    check_name(name)
    if alias:
        check_alias(alias)
    return name, alias, int(version) if version else None
