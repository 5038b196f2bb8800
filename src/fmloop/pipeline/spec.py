"""A pipeline file, read and checked before anything runs.

    name: sst2                         # the run folder is runs/NAME unless `out:` names another
    vars:                              # ${vars.NAME} anywhere below (and --set vars.NAME=...)
      data: ../shared/datasets
    stages:
      clean:                           # the stage's name; `uses:` its kind (default: the name)
        config:
          data: ${vars.data}/text/sst2
      finetune:
        config:                        # the stage's own config, as in `fmloop finetune --config`
          data: {path: ${clean.data}}
          model: {name: bert-mini, tokenizer: ...}
        register: {name: sst2, alias: champion}
      users:
        after: [finetune]              # order (and cache) without a reference: it serves models:/sst2@champion
        config: {model: "models:/sst2@champion", data: ...}

A stage refers to an earlier stage's output as `${stage.output}`; the references decide the order
(file order breaks ties). Every output lives at a path known before anything runs (OUT/STAGE/...),
so every stage config is resolved and validated up front: an unknown stage, a reference to a
stage or output that does not exist, a cycle or a bad config value is reported with its file and
line, and nothing runs. Relative paths are relative to the folder `fmloop run` is started in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from fmloop.core.config import StageConfig, deep_merge, format_validation_error, parse_overrides
from fmloop.core.errors import ConfigError
from fmloop.pipeline.stages import STAGES, StageKind
from fmloop.registry.names import check_alias, check_name

TOP_KEYS = {"name", "out", "vars", "stages"}
STAGE_KEYS = {"uses", "config", "register", "after"}
REFERENCE = re.compile(r"\$\{([^}]*)\}")
WHOLE_REFERENCE = re.compile(r"^\$\{([^}]*)\}$")
NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")


@dataclass
class Registration:
    name: str
    alias: str | None = None


@dataclass
class Stage:
    name: str
    kind: StageKind
    config: StageConfig  # resolved: references replaced by paths
    folder: Path
    at: str  # file:line of the stage, for messages
    needs: list[str] = field(default_factory=list)  # stages whose outputs this one reads
    register: Registration | None = None

    def output(self, name: str) -> str:
        return self.kind.output_path(self.folder, name)


@dataclass
class Pipeline:
    file: Path
    name: str
    out: Path
    stages: dict[str, Stage]  # in run order
    source: dict  # the file's content after --set, for the lock file


# Reading ---------------------------------------------------------------------------------------


def _lines(node: yaml.Node, path: tuple = (), into: dict | None = None) -> dict[tuple, int]:
    """(key, key, ...) -> 1-based line of every value in a composed YAML document."""
    into = {} if into is None else into
    into[path] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            into[(*path, key.value)] = key.start_mark.line + 1
            _lines(value, (*path, key.value), into)
            into[(*path, key.value)] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, value in enumerate(node.value):
            _lines(value, (*path, i), into)
    return into


class _Where:
    """File and line for error messages; values set by --set have no line."""

    def __init__(self, file: Path, lines: dict[tuple, int]):
        self.file, self.lines = file, lines

    def __call__(self, *path) -> str:
        for end in range(len(path), -1, -1):
            if path[:end] in self.lines:
                return f"{self.file}:{self.lines[path[:end]]}"
        return str(self.file)


def load(file: str | Path, sets: list[str] = (), out: str | Path | None = None) -> Pipeline:
    """Read, resolve and validate a pipeline file; `sets` are 'stage.key=value' / 'vars.key=value'."""
    file = Path(file)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"Pipeline file {file} does not exist.") from None
    try:
        node = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{file} is not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(data, dict) or node is None:
        raise ConfigError(f"{file}: a pipeline file is a mapping with `name:` and `stages:` (see docs/pipelines.md).")
    where = _Where(file, _lines(node))
    data = _apply_sets(data, sets, where)
    return _check(data, file, where, out)


def _apply_sets(data: dict, sets: list[str], where: _Where) -> dict:
    """--set finetune.train.lr=1e-4 goes into that stage's config; --set vars.data=... into vars."""
    for item in sets:
        tree = parse_overrides([item])
        ((head, rest),) = tree.items()
        if head == "vars":
            data = deep_merge(data, {"vars": rest})
        elif head in (data.get("stages") or {}):
            data = deep_merge(data, {"stages": {head: {"config": rest}}})
        else:
            stages = ", ".join(data.get("stages") or {}) or "none"
            raise ConfigError(
                f"--set {item}: {head!r} is neither `vars` nor a stage of {where.file} (stages: {stages}). "
                f"Write --set STAGE.key=value or --set vars.NAME=value."
            )
    return data


# Checking --------------------------------------------------------------------------------------


def _check(data: dict, file: Path, where: _Where, out: str | Path | None) -> Pipeline:
    unknown = set(data) - TOP_KEYS
    if unknown:
        key = sorted(unknown)[0]
        raise ConfigError(f"{where(key)}: unknown key {key!r}; a pipeline file has {', '.join(sorted(TOP_KEYS))}.")
    name = data.get("name") or file.stem
    if not isinstance(name, str) or not NAME.match(name):
        raise ConfigError(f"{where('name')}: name {name!r} must be a word (letters, digits, - and _).")
    variables = data.get("vars") or {}
    if not isinstance(variables, dict):
        raise ConfigError(f"{where('vars')}: `vars` must be a mapping of names to values.")
    raw_stages = data.get("stages")
    if not isinstance(raw_stages, dict) or not raw_stages:
        raise ConfigError(f"{where('stages')}: `stages` must map stage names to their kind and config.")
    out = Path(out or data.get("out") or Path("runs") / name)

    entries = {name: _read_stage(name, body, raw_stages, where) for name, body in raw_stages.items()}
    kinds = {name: e.kind for name, e in entries.items()}
    folders = {name: out / name for name in raw_stages}
    needs = {}
    for stage_name, e in entries.items():
        used = _references(e.config, ("stages", stage_name, "config"), raw_stages, kinds, where)
        needs[stage_name] = sorted(used | set(e.after))
    order = _order(list(raw_stages), needs, where)

    stages: dict[str, Stage] = {}
    for stage_name in order:
        e = entries[stage_name]
        resolved = _substitute(e.config, variables, kinds, folders, ("stages", stage_name, "config"), where)
        stages[stage_name] = Stage(
            name=stage_name,
            kind=e.kind,
            config=_validate(e.kind, resolved, stage_name, where),
            folder=folders[stage_name],
            at=where("stages", stage_name),
            needs=needs[stage_name],
            register=e.register,
        )
    return Pipeline(file=file, name=name, out=out, stages=stages, source=data)


@dataclass
class _Entry:
    """A stage as written: its kind, raw config (references unresolved), registration, `after:`."""

    kind: StageKind
    config: dict
    register: Registration | None
    after: list[str]


def _read_stage(stage_name: Any, body: Any, raw_stages: dict, where: _Where) -> _Entry:
    at = ("stages", stage_name)
    if not isinstance(stage_name, str) or not NAME.match(stage_name):
        raise ConfigError(f"{where(*at)}: stage name {stage_name!r} must be a word (letters, digits, - and _).")
    body = body or {}
    if not isinstance(body, dict) or set(body) - STAGE_KEYS:
        extra = sorted(set(body) - STAGE_KEYS) if isinstance(body, dict) else []
        raise ConfigError(
            f"{where(*at, *extra[:1])}: stage {stage_name!r} has {', '.join(map(repr, extra)) or 'no mapping'}; "
            f"a stage has `uses:` (its kind), `config:`, and optionally `register:` and `after:`."
        )
    kind_name = body.get("uses", stage_name)
    if kind_name not in STAGES:
        hint = "" if "uses" in body else f" (no `uses:`, so the name {stage_name!r} is taken as the kind)"
        raise ConfigError(
            f"{where(*at, 'uses')}: unknown stage kind {kind_name!r}{hint}. Valid kinds: {', '.join(STAGES.names())}."
        )
    config = body.get("config") or {}
    if not isinstance(config, dict):
        raise ConfigError(f"{where(*at, 'config')}: the config of stage {stage_name!r} must be a mapping.")
    after = body.get("after") or []
    if not isinstance(after, list) or any(a not in raw_stages for a in after):
        raise ConfigError(
            f"{where(*at, 'after')}: `after:` lists stages this one must follow, from: {', '.join(raw_stages)}."
        )
    return _Entry(STAGES.get(kind_name), config, _registration(body.get("register"), where(*at, "register")), after)


def _registration(value: Any, at: str) -> Registration | None:
    if value is None:
        return None
    if not isinstance(value, dict) or "name" not in value or set(value) - {"name", "alias"}:
        raise ConfigError(f"{at}: `register:` takes {{name: MODEL_NAME, alias: champion}} (alias optional).")
    try:
        return Registration(check_name(str(value["name"])), check_alias(value["alias"]) if value.get("alias") else None)
    except Exception as err:
        raise ConfigError(f"{at}: {err}") from None


def _walk(value: Any, path: tuple):
    """(path, string) for every string in a nested config."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _walk(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk(item, (*path, i))
    elif isinstance(value, str):
        yield path, value


def _references(config: dict, at: tuple, stages: dict, kinds: dict, where: _Where) -> set[str]:
    """The stages a config reads from; a reference to a missing stage or output is an error."""
    used = set()
    for path, text in _walk(config, at):
        for ref in REFERENCE.findall(text):
            head, _, output = ref.partition(".")
            if head == "vars":
                continue
            if head not in stages:
                raise ConfigError(
                    f"{where(*path)}: ${{{ref}}} refers to no stage {head!r}. Stages: {', '.join(stages)}; "
                    f"a reference is ${{STAGE.OUTPUT}}, e.g. ${{{next(iter(stages))}.out}}, or ${{vars.NAME}}."
                )
            if output not in kinds[head].outputs:
                raise ConfigError(
                    f"{where(*path)}: ${{{ref}}}: stage {head!r} ({kinds[head].name}) has no output {output!r}. "
                    f"Its outputs: {', '.join(kinds[head].outputs)}."
                )
            used.add(head)
    return used


def _order(names: list[str], needs: dict[str, list[str]], where: _Where) -> list[str]:
    """Stages in an order where each runs after those it reads from; a cycle is an error."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, trail: list[str]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = trail[trail.index(name) :] + [name]
            raise ConfigError(
                f"{where('stages', name)}: the stages form a cycle: {' -> '.join(cycle)} (each reads an output of "
                f"the next). Remove one of these references; a stage can only read outputs of stages that run before it."
            )
        state[name] = "visiting"
        for upstream in needs[name]:
            visit(upstream, [*trail, name])
        state[name] = "done"
        order.append(name)

    for name in names:
        visit(name, [])
    return order


def _substitute(value: Any, variables: dict, kinds: dict, folders: dict, path: tuple, where: _Where) -> Any:
    if isinstance(value, dict):
        return {k: _substitute(v, variables, kinds, folders, (*path, k), where) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, variables, kinds, folders, (*path, i), where) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def resolve(ref: str) -> Any:
        head, _, rest = ref.partition(".")
        if head == "vars":
            if rest not in variables:
                raise ConfigError(
                    f"{where(*path)}: ${{{ref}}}: no variable {rest!r} in `vars:` "
                    f"(defined: {', '.join(variables) or 'none'}). Add it, or pass --set vars.{rest}=VALUE."
                )
            return variables[rest]
        return kinds[head].output_path(folders[head], rest)

    whole = WHOLE_REFERENCE.match(value)
    if whole:  # keeps the variable's type (a number stays a number)
        return resolve(whole.group(1))
    return REFERENCE.sub(lambda m: str(resolve(m.group(1))), value)


def _validate(kind: StageKind, resolved: dict, stage_name: str, where: _Where) -> StageConfig:
    cls = kind.config_class()
    try:
        return cls.model_validate(resolved)
    except ValidationError as err:
        loc = err.errors()[0]["loc"]
        message = format_validation_error(err, cls).splitlines()[0]
        raise ConfigError(f"{where('stages', stage_name, 'config', *loc)}: stage {stage_name!r}: {message}") from None
