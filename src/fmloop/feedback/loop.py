"""`fmloop loop NAME [--every 1h]`: the loop that keeps a served model improving.

Each pass checks the new feedback since its last attempt and the drift of the served inputs, and
retrains when either calls for it. A retrain's challenger waits for audit labels of the inputs where
it disagrees with the champion; while one waits, each pass judges it on the labels that arrived
(promoted, refused, or still waiting, with the labels it needs) instead of training another. It is
made to run from cron:

- a lock (flock on FMLOOP_HOME/loop/NAME/lock) so two passes never overlap: the second says so and
  leaves;
- idempotent: with no new feedback a pass does nothing, and feedback already tried is not tried
  again (the state file records the high-water id of the last attempt);
- resumable: a pass records the retrain it starts before it starts it; one killed mid-way (kill -9,
  reboot, SIGTERM) is continued by the next pass from what it wrote, on the same snapshot;
- loud when it fails: a retrain that fails with an error ("failed") leaves the high-water mark
  where it was, so the next pass tries the same feedback again, and `fmloop loop` exits non-zero
  (cron mails it). Too little feedback to train or judge on is "skipped", not a failure.

The running server follows @champion and picks up a promoted version by itself.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

from fmloop.core.artifacts import atomic_write_json
from fmloop.core.errors import FmloopError, Interrupted, NotEnoughFeedback
from fmloop.core.home import home
from fmloop.core.locks import exclusive
from fmloop.feedback import monitor, retrain
from fmloop.feedback.config import LoopConfig, RetrainConfig
from fmloop.feedback.store import Store
from fmloop.registry import models as registry

log = logging.getLogger(__name__)

HISTORY = 200  # passes kept in the state file


def folder(name: str) -> Path:
    return home() / "loop" / name


def read_state(name: str) -> dict:
    path = folder(name) / "state.json"
    if not path.exists():
        return {"tried_high_water": 0, "pending": None, "history": []}
    return json.loads(path.read_text())


def write_state(name: str, state: dict) -> None:
    state["history"] = state["history"][-HISTORY:]
    atomic_write_json(folder(name) / "state.json", state)


def locked(name: str):
    """True while this process holds the loop's lock; False when another pass holds it."""
    return exclusive(folder(name) / "lock")


def tick(cfg: LoopConfig) -> dict:
    """One pass; returns what it did: {"action", "reason", "run"?, "promoted"?}."""
    with locked(cfg.name) as held:
        if not held:
            return {"action": "busy", "reason": f"another pass holds {folder(cfg.name) / 'lock'}; nothing done"}
        state = read_state(cfg.name)
        erased = _expire(cfg)
        if state["pending"]:
            outcome = _retrain(cfg, state, state["pending"], resume=True)
        else:
            outcome = _pass(cfg, state)
        outcome["time"] = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        if erased is not None:
            outcome["erased_inputs"] = erased
        state["history"].append(outcome)
        write_state(cfg.name, state)
        return outcome


def _expire(cfg: LoopConfig) -> int | None:
    """The retention period: inputs older than `retention_days` erased (how many), None when unset."""
    if cfg.retention_days is None:
        return None
    store = Store.open(cfg.database)
    try:
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=cfg.retention_days)
        record = store.expire_inputs(cutoff, done_by="fmloop loop")
    finally:
        store.close()
    if record.predictions or record.feedback:
        log.info("retention: %d inputs older than %s erased", record.predictions + record.feedback, cutoff.date())
    return record.predictions + record.feedback


def _pass(cfg: LoopConfig, state: dict) -> dict:
    champion = registry.get(f"models:/{cfg.name}@{registry.CHAMPION}")
    store = Store.open(cfg.database)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    waiting = retrain.pending_challenger(champion)
    if waiting is not None:  # judge it on the labels that arrived: cheap (scoring only), so every pass
        pending = {
            "out": str(folder(cfg.name) / "runs" / f"{stamp}-review-v{waiting.version}"),
            "high_water": state["tried_high_water"],
            "why": f"{waiting.reference} waits for labels",
        }
        state["pending"] = pending
        write_state(cfg.name, state)
        return _retrain(cfg, state, pending, resume=False)
    high_water = store.high_water()
    since = max(int(champion.tags.get(retrain.HIGH_WATER_TAG, "0") or 0), state["tried_high_water"])
    new = store.count_feedback(champion.name, since, high_water)
    drifted, drift_note = _drift(cfg)
    settings = RetrainConfig(name=cfg.name, database=cfg.database, **cfg.retrain)
    if new >= cfg.min_new:
        why = f"{new} new feedback rows (min_new {cfg.min_new})"
    elif drifted and new >= settings.min_corrections:
        why = f"drift ({drift_note}) and {new} new feedback rows"
    else:
        return {
            "action": "nothing",
            "reason": f"{new} new feedback rows since id {since} (min_new {cfg.min_new}); drift: {drift_note}",
        }
    pending = {"out": str(folder(cfg.name) / "runs" / f"{stamp}-hw{high_water}"), "high_water": high_water, "why": why}
    state["pending"] = pending
    write_state(cfg.name, state)  # recorded before it starts: a killed retrain is resumed next time
    return _retrain(cfg, state, pending, resume=False)


def _retrain(cfg: LoopConfig, state: dict, pending: dict, resume: bool) -> dict:
    settings = RetrainConfig(name=cfg.name, database=cfg.database, high_water=pending["high_water"], **cfg.retrain)
    action = "resumed" if resume else "retrained"
    try:
        run = retrain.run(settings, pending["out"], resume=resume)
    except Interrupted as err:  # stopped at a checkpoint: the next pass continues it
        return {"action": "interrupted", "reason": str(err), "run": pending["out"]}
    except NotEnoughFeedback as err:  # read, and too little to train on or judge with: wait for more
        outcome = {"action": "skipped", "reason": f"{pending['why']}, but: {str(err).splitlines()[0]}"}
    except FmloopError as err:
        # Failed (training crashed, the store went away): nothing was learnt from this feedback, so
        # the high-water mark stays where it was and the next pass tries the same rows again.
        state["pending"] = None
        return {
            "action": "failed",
            "reason": f"{pending['why']}, but: {str(err).splitlines()[0]}",
            "exit_code": int(err.exit_code),
        }
    else:
        manifest = run.read_manifest()
        if manifest.get("kind") == "review" and not resume:
            action = "reviewed"
        outcome = {
            "action": action,
            "reason": f"{pending.get('why', 'resumed')}: {manifest['reason']}",
            "run": str(run.path),
            "challenger": manifest["challenger"],
            "decision": manifest["decision"],
            "promoted": manifest["promoted"],
        }
    state["pending"], state["tried_high_water"] = None, pending["high_water"]
    return outcome


def _drift(cfg: LoopConfig) -> tuple[bool, str]:
    if not cfg.drift:
        return False, "not checked"
    try:
        result = monitor.check(cfg.name, cfg.database, cfg.drift_n, cfg.drift_alpha)
    except FmloopError as err:
        return False, f"not checked ({str(err).splitlines()[0]})"
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    monitor.write(result, folder(cfg.name) / "drift" / stamp, cfg.name)
    flagged = [t["name"] for t in result["tests"] if t["drifted"]]
    return bool(flagged), ("flagged by " + ", ".join(flagged)) if flagged else "none"
