"""`fmloop retrain NAME`: a challenger fine-tuned from users' corrections, promoted only through the
gate.

1. Read a snapshot of the corrections since the champion's own high-water id (conflicts resolved).
2. Build the training set: the corrections (minus a seeded hold-out that judges, and a slice that
   picks the best checkpoint beside the champion's validation set) plus a replay sample of the
   champion's own training data, so the challenger does not forget what it knew.
3. Fine-tune the challenger from the champion (or from its base) with the champion's recipe.
4. Score champion and challenger through the same scoring path on the same examples: the target
   set (held-out corrections) and the champion's validation set (the forgetting guard).
5. Register the challenger, and move @champion (old one to @previous) only when the gate says so.
   A failure before step 5 changes nothing in the registry; registration completes before any alias
   moves, so a crash at any point leaves the aliases on complete, loadable versions.
"""

from __future__ import annotations

import csv
import json
import logging
import random
from pathlib import Path

import numpy as np
import yaml

from fmloop.core.artifacts import RunDir, config_hash, require_new_folder
from fmloop.core.config import build_config, deep_merge
from fmloop.core.errors import DataError, FmloopError, RegistryError
from fmloop.core.html import CSS
from fmloop.data.labeled import load_labeled
from fmloop.feedback.config import RetrainConfig
from fmloop.feedback.gate import GateSettings, compare, decide
from fmloop.feedback.snapshot import Example, read_snapshot
from fmloop.feedback.store import Store
from fmloop.models.loading import load
from fmloop.registry import models as registry
from fmloop.registry.names import check_name
from fmloop.registry.tracking import track_quietly
from fmloop.train import finetune
from fmloop.train.config import FinetuneConfig

log = logging.getLogger(__name__)

HIGH_WATER_TAG = "fmloop.feedback_high_water"


def champion_recipe(champion: registry.Version) -> tuple[dict, str]:
    """(the champion's resolved fine-tuning config, the path of its training data)."""
    run = RunDir(champion.tags.get("fmloop.run_dir", ""))
    if not run.config_path.exists():
        raise RegistryError(
            f"The run dir of {champion.reference} ({run.path}) is gone: its recipe and training data cannot be "
            f"found. Retrain needs them to replay and to validate against."
        )
    config = run.read_config()
    data = (config.get("data") or {}).get("path")
    if not data or not Path(data).exists():
        raise DataError(
            f"The training data of {champion.reference} ({data}) cannot be found; put it back there, or register "
            f"a champion trained on data that is reachable."
        )
    return config, data


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)


def run(cfg: RetrainConfig, out: str | Path) -> RunDir:
    out = require_new_folder(out)
    store = Store.open(cfg.database)
    champion = registry.get(f"models:/{check_name(cfg.name)}@{registry.CHAMPION}")
    recipe, data_path = champion_recipe(champion)
    since = int(champion.tags.get(HIGH_WATER_TAG, "0") or 0)
    snapshot = read_snapshot(store, champion.name, since=since)
    if len(snapshot.examples) < cfg.min_corrections:
        raise FmloopError(
            f"{len(snapshot.examples)} corrected inputs for {champion.name} since feedback id {since} "
            f"(min_corrections {cfg.min_corrections}): nothing to retrain on yet. The registry is unchanged."
        )
    labels = champion.labels or []
    examples = [e for e in snapshot.examples if e.label in labels]
    if len({e.label for e in examples}) < 2:
        raise FmloopError(
            f"All {len(examples)} corrections of {champion.name} carry one label ({examples[0].label!r}): a "
            f"challenger and the gate need corrections of at least two classes. The registry is unchanged."
        )
    rng = random.Random(cfg.seed)
    shuffled = examples[:]
    rng.shuffle(shuffled)
    n_hold = max(1, int(round(cfg.holdout_fraction * len(shuffled))))
    held_out, corrections = shuffled[:n_hold], shuffled[n_hold:]
    # The challenger picks its best checkpoint on the champion's validation set plus a slice of the
    # corrections: on the old validation set alone, the untrained start would always look best.
    n_pick = max(1, len(corrections) // 5)
    picking, corrections = corrections[:n_pick], corrections[n_pick:]

    champion_data = load_labeled(data_path, labels=labels, seed=recipe.get("train", {}).get("seed", 42))
    train_split, validation = champion_data.splits["train"], champion_data.splits["validation"]
    n_replay = min(len(train_split), int(round(cfg.replay_ratio * len(corrections))))
    replay_idx = rng.sample(range(len(train_split)), n_replay)
    train_rows = [(e.text, e.label) for e in corrections]
    train_rows += [(train_split[i]["text"], labels[train_split[i]["label"]]) for i in replay_idx]
    if cfg.shuffle_labels:
        shuffled_labels = [label for _, label in train_rows]
        rng.shuffle(shuffled_labels)
        train_rows = [(text, label) for (text, _), label in zip(train_rows, shuffled_labels)]
    rng.shuffle(train_rows)
    run = RunDir(out).create()
    run.write_config(cfg.resolved())
    write_csv(run.path / "data" / "train.csv", train_rows)
    validation_rows = [(t, labels[y]) for t, y in zip(validation["text"], validation["label"])]
    write_csv(run.path / "data" / "validation.csv", validation_rows + [(e.text, e.label) for e in picking])
    run.write_manifest(
        kind="retrain",
        status="running",
        config_hash=config_hash(cfg.resolved()),
        champion=champion.reference,
        feedback={"since": since, "high_water": snapshot.high_water, "corrections": snapshot.corrections,
                  "inputs": len(snapshot.examples), "ties": len(snapshot.ties), "held_out": len(held_out), "checkpoint_picking": len(picking),
                  "trained_on": len(corrections), "replayed": n_replay},
    )  # fmt: skip
    log.info(
        "retraining %s from %d corrections (+%d replayed rows of its training data); %d held out to judge",
        champion.reference,
        len(corrections),
        n_replay,
        len(held_out),
    )

    champion_folder = registry.local_folder(champion.reference)
    start = str(champion_folder) if cfg.start == "champion" else recipe["model"]["name"]
    tree = deep_merge(recipe, {"model": {"name": start}, "data": {"path": str(run.path / "data")}})
    tree["train"] = deep_merge(tree.get("train", {}), cfg.train)
    challenger_run = finetune.run(build_config(FinetuneConfig, tree), run.path / "challenger")
    if challenger_run.read_manifest().status != "finished":
        raise FmloopError(f"The challenger's training stopped ({challenger_run.path}); the registry is unchanged.")
    track_quietly(challenger_run.path)

    decision = judge(champion_folder, challenger_run.model_dir, held_out, validation, labels, cfg)
    (run.path / "decision.json").write_text(json.dumps(decision.to_dict(), indent=2) + "\n")
    version = registry.register(challenger_run.path, champion.name, description=decision.reason)
    registry.client().set_model_version_tag(
        champion.name, str(version.version), HIGH_WATER_TAG, str(snapshot.high_water)
    )
    promoted = bool(decision.promote and cfg.promote)
    if promoted:
        registry.promote(champion.name, version.version)
    (run.path / "report.html").write_text(report(champion, version, decision, promoted, snapshot), encoding="utf-8")
    run.write_manifest(
        status="finished",
        challenger=version.reference,
        promoted=promoted,
        reason=decision.reason,
        metrics={
            f"{side}_{which}": getattr(getattr(decision, which), side)
            for which in ("target", "guard")
            for side in ("champion", "challenger")
        },
    )
    log.info("%s: %s", version.reference, decision.reason)
    track_quietly(run.path)
    return run


def judge(champion_folder: Path, challenger_folder: Path, held_out: list[Example], validation, labels, cfg):
    """Score both models on the same examples through the one scoring path; the gate's decision."""
    champion, challenger = load(champion_folder, device="cpu"), load(challenger_folder, device="cpu")
    texts = [e.text for e in held_out]
    y = np.array([labels.index(e.label) for e in held_out])
    target = compare("held-out corrections", champion.task, y, champion.logits(texts), challenger.logits(texts))
    val_texts, val_y = list(validation["text"]), np.asarray(validation["label"])
    guard = compare(
        "the champion's validation set", champion.task, val_y, champion.logits(val_texts), challenger.logits(val_texts)
    )
    return decide(target, guard, GateSettings(cfg.margin, cfg.alpha, cfg.tolerance))


def report(champion, version, decision, promoted: bool, snapshot) -> str:
    rows = "".join(
        f"<tr><td>{c.name}</td><td>{c.n}</td><td>{c.champion:.4f}</td><td>{c.challenger:.4f}</td>"
        f"<td>{c.difference:+.4f} [{c.interval[0]:+.4f}, {c.interval[1]:+.4f}]</td><td>{c.p_value:.3g}</td>"
        f"<td>{'' if c.mcnemar_p is None else f'{c.mcnemar_p:.3g}'}</td></tr>"
        for c in (decision.target, decision.guard)
    )
    outcome = "promoted to @champion" if promoted else "not promoted"
    return (
        f"<!doctype html><meta charset='utf-8'><title>retrain {champion.name}</title><style>{CSS}</style>"
        f"<h1>Retrain of {champion.reference}</h1><p><b>{version.reference}: {outcome}.</b> {decision.reason}</p>"
        f"<p>Feedback snapshot up to id {snapshot.high_water}: {snapshot.corrections} corrections of "
        f"{len(snapshot.examples)} inputs; {len(snapshot.ties)} tied inputs left out.</p>"
        f"<table><tr><th>set</th><th>n</th><th>champion</th><th>challenger</th><th>difference [95%]</th>"
        f"<th>paired bootstrap p</th><th>McNemar p</th></tr>{rows}</table>"
        f"<pre>{yaml.safe_dump(decision.to_dict()['settings'])}</pre>"
    )
