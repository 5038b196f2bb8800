"""Typed stage configs: YAML file + dotted overrides -> validated pydantic model.

    cfg = load_config(PretrainConfig, "pretrain.yaml", ["--train.lr=3e-4", "train.max_steps=200"])

Validation errors read like scikit-learn's:
    The 'train.lr' parameter of pretrain must be > 0. Got -1 instead.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Iterable

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError

from fmloop.core.errors import ConfigError


class StageConfig(BaseModel):
    """Base for every config section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())
    stage: ClassVar[str] = "fmloop"

    def resolved(self) -> dict:
        """Plain dict with every default filled in: what gets written to config.yaml."""
        return self.model_dump(mode="json")


_DURATION = re.compile(
    r"^\s*(?:(\d+(?:\.\d+)?)d)?\s*(?:(\d+(?:\.\d+)?)h)?\s*(?:(\d+(?:\.\d+)?)m)?\s*(?:(\d+(?:\.\d+)?)s?)?\s*$"
)


def parse_duration(text: str | int | float | None) -> float | None:
    """'90s', '30m', '1h30m', '2h', '1d', '45' (seconds) -> seconds. None stays None."""
    if text is None or isinstance(text, (int, float)):
        return None if text is None else float(text)
    match = _DURATION.match(str(text))
    if not match or not any(match.groups()):
        raise ValueError(f"not a duration like '90s', '30m' or '1h30m': {text!r}")
    days, hours, minutes, seconds = (float(g) if g else 0.0 for g in match.groups())
    return days * 86400 + hours * 3600 + minutes * 60 + seconds


def _check_duration(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


# A wall-clock budget written like '90s', '30m' or '1h30m' (validated, kept as written).
Duration = Annotated[str | None, AfterValidator(_check_duration)]


# Loading -------------------------------------------------------------------------------------


def parse_overrides(items: Iterable[str]) -> dict:
    """['--train.lr=3e-4', 'model.name=bert-tiny'] -> {'train': {'lr': '3e-4'}, 'model': {...}}.

    Values are parsed as YAML scalars (so `true`, `null`, `[1, 2]` work); pydantic then coerces
    strings such as '3e-4' to the field's type.
    """
    tree: dict = {}
    for item in items:
        text = item[2:] if item.startswith("--") else item
        if "=" not in text:
            raise ConfigError(f"Override {item!r} has no value. Write it as --section.key=value, e.g. --train.lr=3e-4.")
        key, raw = text.split("=", 1)
        key = key.replace("-", "_")
        try:
            value = yaml.safe_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"Override {item!r} conflicts with another override of {part!r}.")
        node[parts[-1]] = value
    return tree


def deep_merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"Config file {path} is not valid YAML: {err}".replace("\n", " ")) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping of sections, got {type(data).__name__}.")
    return data


def load_config(
    cls: type[StageConfig], file: str | Path | None = None, overrides: Iterable[str] | dict | None = None
) -> StageConfig:
    """Build a validated config from an optional YAML file and dotted overrides (later wins)."""
    data = read_yaml(file) if file else {}
    if overrides:
        data = deep_merge(data, overrides if isinstance(overrides, dict) else parse_overrides(overrides))
    return build_config(cls, data)


def build_config(cls: type[StageConfig], data: dict) -> StageConfig:
    try:
        return cls.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, cls)) from None


# Error messages --------------------------------------------------------------------------------

_PHRASES = {
    "greater_than": "must be > {gt}",
    "greater_than_equal": "must be >= {ge}",
    "less_than": "must be < {lt}",
    "less_than_equal": "must be <= {le}",
    "int_parsing": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "bool_parsing": "must be true or false",
    "string_type": "must be a string",
    "literal_error": "must be one of {expected}",
    "missing": "is required",
    "too_short": "needs at least {min_length} items",
}


def _field_names(cls: type[BaseModel], loc: tuple) -> list[str]:
    """Valid keys at the level where an unknown key appeared (for the 'did you mean' hint)."""
    model: Any = cls
    for part in loc[:-1]:
        field = model.model_fields.get(part) if hasattr(model, "model_fields") else None
        if field is None:
            return []
        model = field.annotation
    return list(getattr(model, "model_fields", {}))


def format_validation_error(err: ValidationError, cls: type[StageConfig]) -> str:
    lines = []
    for e in err.errors():
        name = ".".join(str(p) for p in e["loc"])
        got = e.get("input")
        if e["type"] == "extra_forbidden":
            valid = _field_names(cls, e["loc"])
            close = difflib.get_close_matches(str(e["loc"][-1]), valid, n=1)
            hint = f" Did you mean {'.'.join([*map(str, e['loc'][:-1]), close[0]])!r}?" if close else ""
            lines.append(f"{cls.stage} has no parameter {name!r}.{hint} Valid here: {', '.join(valid)}.")
            continue
        phrase = _PHRASES.get(e["type"])
        if phrase:
            ctx = {k: (f"{v:g}" if isinstance(v, float) else v) for k, v in (e.get("ctx") or {}).items()}
            phrase = phrase.format(**ctx)
        else:
            phrase = e["msg"][0].lower() + e["msg"][1:]
            phrase = phrase.removeprefix("value error, ")
        if not name:  # a check across several parameters: its message names them
            lines.append(f"{cls.stage}: {phrase[0].upper()}{phrase[1:]}.")
            continue
        lines.append(f"The {name!r} parameter of {cls.stage} {phrase}. Got {got!r} instead.")
    return "\n".join(lines)


def tree_from_flat(pairs: dict) -> dict:
    """{'train.lr': 3e-4, 'model.name': None} -> {'train': {'lr': 3e-4}} (None values dropped)."""
    tree: dict = {}
    for key, value in pairs.items():
        if value is None:
            continue
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree
