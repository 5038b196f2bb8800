"""`fmloop run pipeline.yaml`: run a pipeline's stages in order, skipping those already done.

    OUT/                      runs/NAME unless the file or --out says otherwise
      pipeline.yaml           the file as run (after --set)
      pipeline.lock           what ran: per stage its kind, cache key, status, time, outputs, metrics
      report.html             the lifecycle report, linking every stage's own report
      STAGE/                  each stage's run dir

A stage's cache key hashes its kind, the fmloop version, its resolved config, the keys of the
stages it reads from and the size and modification time of every input file or folder its config
names. A stage whose key matches a finished entry of the lock file is skipped ("cached"); one that
was stopped (SIGTERM, Ctrl-C) with the same key continues from its checkpoint; anything else runs
afresh. The lock file is rewritten (atomically) before and after every stage, so a crash leaves it
saying which stage was running.

SIGTERM or Ctrl-C stops the pipeline at the current stage's next safe point (a training stage
checkpoints first): the next stage never starts on an interrupted stage's output, and running the
same command again resumes. A second Ctrl-C aborts at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from fmloop.core import stop
from fmloop.core.artifacts import RunDir, atomic_write_text, fmloop_version, remove_output
from fmloop.core.errors import ConfigError, FmloopError, Interrupted
from fmloop.core.locks import exclusive
from fmloop.pipeline.spec import Pipeline, Stage
from fmloop.registry import models as registry
from fmloop.registry.tracking import track_quietly

log = logging.getLogger(__name__)

LOCK = "pipeline.lock"


@dataclass
class Step:
    """What the runner will do with one stage."""

    stage: Stage
    key: str
    action: str  # "cached", "resume", "run" or "skip" (outside --from / --only, used as it is)
    why: str


# Cache keys ------------------------------------------------------------------------------------


def _input_stamp(value: str, out: Path) -> str | None:
    """Size and mtime of an existing input path outside the pipeline's own folder (a folder: of
    every file in it), or None for anything else (presets, hub ids, URLs)."""
    if "://" in value or len(value) > 4096:
        return None
    path = Path(value).expanduser()
    try:
        if not path.exists() or path.resolve().is_relative_to(out.resolve()):
            return None
    except OSError:
        return None
    own = out.resolve()
    nested = own.is_relative_to(path.resolve())  # the pipeline's own folder inside an input folder: not an input
    files = (
        [path]
        if path.is_file()
        else sorted(p for p in path.rglob("*") if p.is_file() and not (nested and _inside(p, own)))
    )
    digest = hashlib.sha256()
    for f in files:
        st = f.stat()
        digest.update(f"{f.relative_to(path) if f != path else f.name}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve().is_relative_to(folder)
    except OSError:
        return False


def _strings(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, str):
        yield value


def stage_key(stage: Stage, upstream: dict[str, str], out: Path) -> str:
    config = stage.config.resolved()
    blob = {
        "kind": stage.kind.name,
        "fmloop": fmloop_version(),
        "config": config,
        "upstream": {name: upstream[name] for name in stage.needs},
        "inputs": {s: stamp for s in sorted(set(_strings(config))) if (stamp := _input_stamp(s, out))},
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


# The lock file ---------------------------------------------------------------------------------


def read_lock(out: Path) -> dict:
    path = out / LOCK
    if not path.exists():
        return {"stages": {}}
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path} is not valid YAML ({err}); delete it to run every stage again.") from None
    data.setdefault("stages", {})
    return data


def write_lock(out: Path, lock: dict) -> None:
    atomic_write_text(
        out / LOCK,
        "# written by `fmloop run`: what ran and with which inputs; a stage whose key is unchanged is skipped\n"
        + yaml.safe_dump(lock, sort_keys=False),
    )


def _finished(entry: dict | None, stage: Stage) -> bool:
    return bool(entry) and entry.get("status") == "finished" and stage.folder.is_dir()


# Planning --------------------------------------------------------------------------------------


def plan(pipeline: Pipeline, start: str | None = None, only: str | None = None, force: bool = False) -> list[Step]:
    """What `run` would do with each stage, in order; nothing is written."""
    names = list(pipeline.stages)
    for option, value in (("--from", start), ("--only", only)):
        if value is not None and value not in pipeline.stages:
            raise ConfigError(f"{option} {value}: no such stage in {pipeline.file}. Stages: {', '.join(names)}.")
    if start and only:
        raise ConfigError("--from and --only cannot be combined: --only runs one stage, --from it and those after.")
    chosen = {only} if only else set(names[names.index(start) :]) if start else set(names)
    lock = read_lock(pipeline.out)["stages"]
    keys: dict[str, str] = {}
    steps = []
    for name, stage in pipeline.stages.items():
        key = keys[name] = stage_key(stage, keys, pipeline.out)
        entry = lock.get(name)
        if name not in chosen:
            steps.append(Step(stage, key, "skip", "outside --from/--only: used as it is"))
        elif force or only or start:  # --from reruns its stage and every one after it
            steps.append(Step(stage, key, "run", "asked for"))
        elif _finished(entry, stage) and entry["key"] == key:
            steps.append(Step(stage, key, "cached", f"unchanged since {entry.get('finished', 'its last run')}"))
        elif (
            entry
            and entry.get("key") == key
            and entry.get("status") in ("stopped", "running")
            and stage.folder.is_dir()
        ):
            steps.append(Step(stage, key, "resume", f"{entry['status']} at its last checkpoint"))
        else:
            why = (
                "not run yet"
                if not entry
                else "its config, inputs or fmloop changed"
                if entry.get("key") != key
                else (f"last run {entry.get('status')}")
            )
            steps.append(Step(stage, key, "run", why))
    needed = {n for s in steps if s.action != "skip" for n in s.stage.needs}
    for s in steps:
        if s.action == "skip" and s.stage.name in needed and not _finished(lock.get(s.stage.name), s.stage):
            raise ConfigError(
                f"stage {s.stage.name!r} has not finished, and a stage you asked for reads its output: "
                f"run the pipeline without --from/--only first."
            )
    return steps


# Running ---------------------------------------------------------------------------------------


def _on_signal(signum, frame):
    if stop.requested() and signum == signal.SIGINT:
        raise KeyboardInterrupt  # a second Ctrl-C: abort now
    stop.request(signum)
    log.warning("%s received: stopping after the current stage's next safe point", signal.Signals(signum).name)


def run(
    pipeline: Pipeline, start: str | None = None, only: str | None = None, force: bool = False, command: str = ""
) -> dict:
    """Run the pipeline; returns the lock file's content. Raises Interrupted after a signal."""
    out = pipeline.out
    out.mkdir(parents=True, exist_ok=True)
    with exclusive(out / ".running") as held:
        if not held:
            raise ConfigError(f"another `fmloop run` is working in {out}; wait for it, or pass another --out.")
        steps = plan(pipeline, start, only, force)
        atomic_write_text(out / "pipeline.yaml", yaml.safe_dump(pipeline.source, sort_keys=False))
        lock = read_lock(out)
        lock.update(pipeline=str(pipeline.file), command=command or f"fmloop run {pipeline.file}")
        stop.clear()
        previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            for i, step in enumerate(steps, 1):
                _run_step(step, f"[{i}/{len(steps)}]", lock, out, command or f"fmloop run {pipeline.file}")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return lock


def _run_step(step: Step, counter: str, lock: dict, out: Path, command: str) -> None:
    stage, entries = step.stage, lock["stages"]
    if step.action in ("skip", "cached"):
        log.info("%s %s (%s): %s, %s", counter, stage.name, stage.kind.name, step.action, step.why)
        if step.action == "cached":
            _register(stage, entries[stage.name])
            write_lock(out, lock)
        return
    log.info("%s %s (%s): %s (%s)", counter, stage.name, stage.kind.name, step.action, step.why)
    resume = step.action == "resume" and stage.kind.resumable and RunDir(stage.folder).resumable()
    if resume:
        last = max((p.name for p in RunDir(stage.folder).checkpoints_dir.glob("step-*")), default="")
        log.info("%s: continuing from its checkpoint %s", stage.name, last)
    started = time.perf_counter()
    entries[stage.name] = {
        "kind": stage.kind.name,
        "key": step.key,
        "status": "running",
        "started": _now(),
        "out": str(stage.folder),
    }
    write_lock(out, lock)
    entry = entries[stage.name]
    try:
        if not resume:
            remove_output(stage.folder)
        run_function = stage.kind.run_function()
        result = (
            run_function(stage.config, stage.folder, resume=True)
            if resume
            else run_function(stage.config, stage.folder)
        )
        status = _status(result)
    except Interrupted as err:
        entry.update(status="stopped", seconds=_seconds(entry, started), message=str(err))
        write_lock(out, lock)
        raise Interrupted(_stopped_message(stage, command)) from None
    except KeyboardInterrupt:
        entry.update(status="stopped", seconds=_seconds(entry, started))
        write_lock(out, lock)
        raise Interrupted(_stopped_message(stage, command)) from None
    except FmloopError as err:
        entry.update(status="failed", seconds=_seconds(entry, started), message=str(err))
        write_lock(out, lock)
        raise type(err)(f"stage {stage.name!r} ({stage.at}) failed: {err}", err.exit_code) from None
    except BaseException as err:
        entry.update(status="failed", seconds=_seconds(entry, started), message=f"{type(err).__name__}: {err}")
        write_lock(out, lock)
        raise
    entry.update(status=status, seconds=_seconds(entry, started), outputs=_outputs(stage), metrics=_metrics(stage))
    if status == "finished":
        entry["finished"] = _now()
        track_quietly(stage.folder)
        _register(stage, entry)
    write_lock(out, lock)
    if status != "finished" or stop.requested():
        raise Interrupted(_stopped_message(stage, command, done=status == "finished"))
    log.info("%s %s: finished in %.0f s", counter, stage.name, entry["seconds"])


def _status(result) -> str:
    """A stage's outcome from its manifest: 'stopped' by a signal at a checkpoint, else 'finished'
    (a pretraining run cut by its time budget says "stopped" too, but its model is saved and the
    stage is done as far as the pipeline goes)."""
    path = Path(getattr(result, "path", "")) if result is not None else None
    if path is None or not (path / "manifest.json").exists():
        return "finished"
    manifest = RunDir(path).read_manifest()
    return "stopped" if manifest.status == "stopped" and stop.by_signal(manifest.get("stop_reason")) else "finished"


def _register(stage: Stage, entry: dict) -> None:
    """Register a finished stage's model when the file asks for it, once per run dir. The alias is
    set only then: a later rerun of a cached stage must not move @champion back from a version a
    retrain promoted since."""
    if stage.register is None:
        return
    name, alias = stage.register.name, stage.register.alias
    version = registry.registered_from(name, stage.folder)
    if version is None:
        version = registry.register(stage.folder, name)
        log.info("%s: registered as models:/%s/%d", stage.name, name, version.version)
        if alias == "champion":  # through promote, so @previous keeps the one it replaced
            registry.promote(name, version.version)
        elif alias:
            registry.set_alias(name, alias, version.version)
        if alias:
            log.info("%s: models:/%s@%s -> version %d", stage.name, name, alias, version.version)
    entry["registered"] = f"models:/{name}/{version.version}"


def _outputs(stage: Stage) -> dict:
    return {name: stage.output(name) for name in stage.kind.outputs}


def _metrics(stage: Stage) -> dict:
    """What the stage reached, for the lock file and the reports: its manifest's metrics, why it
    stopped (a time budget shows here), a compressed model's parity with its parent, model size."""
    manifest = stage.folder / "manifest.json"
    if not manifest.exists():
        return {}
    m = RunDir(stage.folder).read_manifest()
    keep = {k: v for k, v in m.metrics.items() if isinstance(v, (int, float, str, bool)) and v is not None}
    if m.get("stop_reason"):
        keep["stop_reason"] = m.get("stop_reason")
    parity = m.get("parity") or {}
    keep.update({f"parity_{k}": parity[k] for k in ("agreement", "accuracy", "parent_accuracy") if k in parity})
    model = stage.folder / "model"
    if model.is_dir():
        keep["model_mb"] = round(sum(f.stat().st_size for f in model.rglob("*") if f.is_file()) / 1e6, 1)
    return keep


def _stopped_message(stage: Stage, command: str, done: bool = False) -> str:
    where = (
        "after it finished"
        if done
        else "at its last checkpoint"
        if stage.kind.name in ("pretrain", "finetune", "retrain")
        else ""
    )
    return (
        f"pipeline stopped in stage {stage.name!r}{' ' + where if where else ''}; no later stage ran. "
        f"Run `{command}` again to continue from there."
    )


def _seconds(entry: dict, started: float) -> float:
    return round(time.perf_counter() - started, 1)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
