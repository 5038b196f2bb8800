"""`fmloop retrain NAME`: a challenger fine-tuned from users' corrections, promoted only through the
gate.

1. Read a snapshot of the feedback up to a high-water id: the corrections since the champion's own
   snapshot, and every audit label (conflicts resolved by majority, optionally weighed by trust).
2. Build the training set: the corrections (minus those confident learning flags as likely wrong,
   minus any input of the audit set, minus a slice that, with as many rows of the champion's
   validation set, picks the best checkpoint) plus a replay sample of the champion's own training data, so the
   challenger does not forget what it knew.
3. Fine-tune the challenger from the champion (or from its base) with the champion's recipe.
4. Score champion and challenger through the same scoring path on the same examples: the audit
   labels (the target: users correct mostly what is wrong, so corrections would flatter any
   retrained model) and the champion's validation set (the forgetting guard).
5. Register the challenger, and move @champion (old one to @previous) only when the gate says so.

A failure before step 5 changes nothing in the registry; registration completes before any alias
moves, so a kill at any point leaves the aliases on complete, loadable versions. `resume=True`
continues an interrupted run from what it wrote: the same snapshot, the challenger's last
checkpoint, the version it registered.
"""

from __future__ import annotations

import csv
import html
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from fmloop.core.artifacts import (
    RunDir,
    atomic_write_json,
    atomic_write_text,
    config_hash,
    remove_output,
    require_new_folder,
)
from fmloop.core.config import build_config, deep_merge
from fmloop.core.errors import DataError, FmloopError, Interrupted, NotEnoughFeedback, RegistryError
from fmloop.core.faults import crash_point
from fmloop.core.html import CSS
from fmloop.data.labeled import load_labeled
from fmloop.feedback.config import RetrainConfig
from fmloop.feedback.gate import Decision, GateSettings, compare, decide
from fmloop.feedback.schema import AUDIT
from fmloop.feedback.snapshot import Example, Snapshot, read_snapshot
from fmloop.feedback.store import Store
from fmloop.label.issues import text_label_issues
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


@dataclass
class TrainingSet:
    """What the challenger learns from and what judges it, all from one feedback snapshot."""

    snapshot: Snapshot  # the corrections since the champion's snapshot
    audit: list[Example]  # the gate's target set: audit labels up to the same high-water id
    rows: list[tuple[str, str]]  # the challenger's training rows: kept feedback rows + replay
    picking: list[Example]  # feedback rows that pick the checkpoint (see picking_set)
    dropped: list[dict] = field(default_factory=list)  # feedback rows the label check flagged
    label_check: str = ""  # what the label check did
    counts: dict = field(default_factory=dict)


def plan(store: Store, champion: registry.Version, cfg: RetrainConfig, since: int, high_water: int, train_split):
    """The training set for a challenger of `champion`, or a clear error when there is nothing to
    train on or nothing to judge with (raised before anything is written)."""
    labels = champion.labels or []
    snapshot = read_snapshot(store, champion.name, high_water, since=since, trust=cfg.trust)
    audit = read_snapshot(store, champion.name, high_water, kind=AUDIT, trust=cfg.trust).examples
    audit = [e for e in audit if e.label in labels]
    if len(snapshot.examples) < cfg.min_corrections:
        raise NotEnoughFeedback(
            f"{len(snapshot.examples)} corrected inputs for {champion.name} in feedback ids {since + 1}..{high_water} "
            f"(min_corrections {cfg.min_corrections}): nothing to retrain on yet. The registry is unchanged."
        )
    audited = {e.text for e in audit}
    corrections = [e for e in snapshot.examples if e.label in labels and e.text not in audited]
    if len({e.label for e in corrections}) < 2:
        raise NotEnoughFeedback(
            f"All {len(corrections)} usable corrections of {champion.name} carry one label "
            f"({corrections[0].label if corrections else 'none'!r}): a challenger needs corrections of at least two "
            f"classes. The registry is unchanged."
        )
    if len(audit) < cfg.min_audit:
        raise NotEnoughFeedback(
            f"{len(audit)} audit labels for {champion.name} (min_audit {cfg.min_audit}): the gate judges a "
            f"challenger on audit labels, never on corrections alone. Label the sampled predictions on the server's "
            f"Audit tab or with `fmloop feedback audit-export`. The registry is unchanged."
        )
    rng = random.Random(cfg.seed)
    taken = audited | {e.text for e in corrections}
    accepted = [
        Example(text, label, 0.0, "accepted")
        for text, label in dict(
            store.accepted(champion.name, high_water, round(cfg.accepted_ratio * len(corrections)))
        ).items()
        if text not in taken and label in labels
    ]
    n_replay = min(len(train_split), int(round(cfg.replay_ratio * len(corrections))))
    replay = [
        (train_split[i]["text"], labels[train_split[i]["label"]]) for i in rng.sample(range(len(train_split)), n_replay)
    ]
    feedback = corrections + accepted
    rng.shuffle(feedback)
    dropped, note = [], "off"
    if cfg.label_check:
        feedback, dropped, note = check_labels(feedback, replay, labels, cfg.seed)
    # A fifth of the feedback picks the challenger's best checkpoint (see picking_set).
    n_pick = max(1, len(feedback) // 5)
    picking, feedback = feedback[:n_pick], feedback[n_pick:]
    rows = [(e.text, e.label) for e in feedback] + replay
    if cfg.shuffle_labels:
        shuffled = [label for _, label in rows]
        rng.shuffle(shuffled)
        rows = [(text, label) for (text, _), label in zip(rows, shuffled)]
    rng.shuffle(rows)
    counts = {
        "since": since,
        "high_water": high_water,
        "corrections": snapshot.corrections,
        "inputs": len(snapshot.examples),
        "ties": len(snapshot.ties),
        "audit": len(audit),
        "accepted": len(accepted),
        "dropped_by_label_check": len(dropped),
        "checkpoint_picking": len(picking),
        "trained_on": sum(e.source == "correction" for e in feedback),
        "trained_on_accepted": sum(e.source == "accepted" for e in feedback),
        "replayed": n_replay,
    }
    return TrainingSet(snapshot, audit, rows, picking, dropped, note, counts)


def picking_set(picking: list[Example], validation, labels: list[str], seed: int) -> list[tuple[str, str]]:
    """The rows that pick the challenger's checkpoint: the picking feedback rows and as many rows of the
    champion's validation set. Equal parts, because on the whole validation set (hundreds of rows
    against a few dozen corrections) the champion itself, the run's starting point, would always
    look best; the whole validation set still guards against forgetting at the gate."""
    rows = [(t, labels[y]) for t, y in zip(validation["text"], validation["label"])]
    sample = random.Random(seed).sample(rows, min(len(rows), max(len(picking), 20)))
    return sample + [(e.text, e.label) for e in picking]


def check_labels(feedback: list[Example], replay, labels: list[str], seed: int):
    """(kept feedback rows, dropped ones, what was done): confident learning on TF-IDF features of
    the feedback rows (corrections and accepted answers) and the replayed rows; only feedback rows
    are dropped (the replay is the champion's curated data)."""
    texts = [e.text for e in feedback] + [text for text, _ in replay]
    y = np.array([labels.index(e.label) for e in feedback] + [labels.index(label) for _, label in replay])
    try:
        ranked, probs = text_label_issues(texts, y, len(labels), seed=seed)
    except (DataError, ValueError) as err:  # too few rows of a class for the folds, or no shared words
        return feedback, [], f"skipped: {str(err).splitlines()[0]}"
    flagged = [int(i) for i in ranked if i < len(feedback)]
    dropped = [
        {
            "input": feedback[i].text[:300],
            "source": feedback[i].source,
            "label": feedback[i].label,
            "suggested": labels[int(probs[i].argmax())],
            "p_label": round(float(probs[i, y[i]]), 4),
        }
        for i in flagged
    ]
    gone = set(flagged)
    kept = [e for i, e in enumerate(feedback) if i not in gone]
    return (
        kept,
        dropped,
        f"confident learning on TF-IDF features: {len(dropped)} of {len(feedback)} feedback rows dropped",
    )


def run(cfg: RetrainConfig, out: str | Path, *, resume: bool = False) -> RunDir:
    out = Path(out)
    run = RunDir(out)
    earlier = run.read_manifest() if resume and run.manifest_path.exists() else None
    if earlier is not None and earlier.status == "finished":
        return run
    if earlier is None:
        if resume:  # killed before it wrote its manifest: nothing in it is worth keeping
            remove_output(out)
        require_new_folder(out)
    store = Store.open(cfg.database)
    # A resumed run keeps the champion and the snapshot it started with, so it trains on the same rows.
    champion = registry.get(earlier["champion"] if earlier else f"models:/{check_name(cfg.name)}@{registry.CHAMPION}")
    recipe, data_path = champion_recipe(champion)
    since = int(champion.tags.get(HIGH_WATER_TAG, "0") or 0)
    if earlier is not None:
        high_water = earlier["feedback"]["high_water"]
    else:
        high_water = cfg.high_water if cfg.high_water is not None else store.high_water()
    labels = champion.labels or []
    champion_data = load_labeled(data_path, labels=labels, seed=recipe.get("train", {}).get("seed", 42))
    validation = champion_data.splits["validation"]
    training = plan(store, champion, cfg, since, high_water, champion_data.splits["train"])

    if earlier is None:
        run.create()
    run.write_config(cfg.resolved())
    write_csv(run.path / "data" / "train.csv", training.rows)
    write_csv(run.path / "data" / "validation.csv", picking_set(training.picking, validation, labels, cfg.seed))
    run.write_manifest(
        kind="retrain",
        status="running",
        config_hash=config_hash(cfg.resolved()),
        champion=champion.reference,
        feedback=training.counts,
        label_check=training.label_check,
    )
    crash_point("retrain:data-written")
    log.info(
        "retraining %s on %d corrections (+%d replayed rows of its training data); %d audit labels judge",
        champion.reference,
        training.counts["trained_on"],
        training.counts["replayed"],
        len(training.audit),
    )

    champion_folder = registry.local_folder(champion.reference)
    challenger_run = train_challenger(cfg, recipe, champion_folder, run.path / "challenger")
    track_quietly(challenger_run.path)
    crash_point("retrain:trained")

    decision = judge(champion_folder, challenger_run.model_dir, training.audit, validation, labels, cfg)
    atomic_write_json(run.path / "decision.json", decision.to_dict())
    version = registry.registered_from(champion.name, challenger_run.path) or registry.register(
        challenger_run.path,
        champion.name,
        description=decision.reason,
        tags={HIGH_WATER_TAG: str(high_water), "fmloop.gate": "passed" if decision.promote else "refused"},
    )
    crash_point("retrain:registered")
    promoted = bool(decision.promote and cfg.promote)
    if promoted:
        registry.promote(champion.name, version.version)
    crash_point("retrain:promoted")
    atomic_write_text(run.path / "report.html", report(champion, version, decision, promoted, training))
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


def train_challenger(cfg: RetrainConfig, recipe: dict, champion_folder: Path, out: Path) -> RunDir:
    """The challenger's fine-tuning run (continued from its last checkpoint when one is there)."""
    existing = RunDir(out)
    if existing.manifest_path.exists() and existing.read_manifest().status == "finished":
        return existing
    start = str(champion_folder) if cfg.start == "champion" else recipe["model"]["name"]
    tree = deep_merge(recipe, {"model": {"name": start}, "data": {"path": str(out.parent / "data")}})
    # The reading (length, truncation) is chosen again from the new rows, not the champion's data.
    recipe_train = {k: v for k, v in tree.get("train", {}).items() if k not in ("max_length", "truncation")}
    tree["train"] = deep_merge(recipe_train, cfg.train)
    resumable = existing.resumable()
    try:
        challenger = finetune.run(build_config(FinetuneConfig, tree), out, resume=resumable, overwrite=not resumable)
    except FmloopError:
        raise
    except Exception as err:
        raise FmloopError(
            f"The challenger failed to train ({type(err).__name__}: {err}); the registry is unchanged."
        ) from err
    status = challenger.read_manifest().status
    if status == "stopped":
        raise Interrupted(
            f"The challenger's training was stopped at its last checkpoint ({challenger.path}); the registry is "
            f"unchanged. `fmloop retrain {cfg.name} --resume --out {out.parent}` (or the next `fmloop loop`) continues it."
        )
    if status != "finished":
        raise FmloopError(f"The challenger's training ended {status} ({challenger.path}); the registry is unchanged.")
    return challenger


def judge(champion_folder: Path, challenger_folder: Path, audit: list[Example], validation, labels, cfg) -> Decision:
    """Score both models on the same examples through the one scoring path; the gate's decision."""
    champion, challenger = load(champion_folder, device="cpu"), load(challenger_folder, device="cpu")
    texts = [e.text for e in audit]
    y = np.array([labels.index(e.label) for e in audit])
    target = compare("the audit labels", champion.task, y, champion.logits(texts), challenger.logits(texts))
    val_texts, val_y = list(validation["text"]), np.asarray(validation["label"])
    guard = compare(
        "the champion's validation set", champion.task, val_y, champion.logits(val_texts), challenger.logits(val_texts)
    )
    return decide(target, guard, GateSettings(cfg.margin, cfg.alpha, cfg.tolerance))


def report(champion, version, decision: Decision, promoted: bool, training: TrainingSet) -> str:
    rows = "".join(
        f"<tr><td>{c.name}</td><td>{c.n}</td><td>{c.champion:.4f}</td><td>{c.challenger:.4f}</td>"
        f"<td>{c.difference:+.4f} [{c.interval[0]:+.4f}, {c.interval[1]:+.4f}]</td><td>{c.p_value:.3g}</td>"
        f"<td>{'' if c.mcnemar_p is None else f'{c.mcnemar_p:.3g}'}</td></tr>"
        for c in (decision.target, decision.guard)
    )
    dropped = "".join(
        f"<tr><td>{html.escape(d['input'])}</td><td>{html.escape(d['label'])} ({d['source']})</td>"
        f"<td>{html.escape(d['suggested'])}</td><td>{d['p_label']:.3f}</td></tr>"
        for d in training.dropped[:100]
    )
    counts = training.counts
    outcome = "promoted to @champion" if promoted else "not promoted"
    return (
        f"<!doctype html><meta charset='utf-8'><title>retrain {champion.name}</title><style>{CSS}</style>"
        f"<h1>Retrain of {champion.reference}</h1><p><b>{version.reference}: {outcome}.</b> "
        f"{html.escape(decision.reason)}</p>"
        f"<p>Feedback ids {counts['since'] + 1}..{counts['high_water']}: {counts['corrections']} corrections of "
        f"{counts['inputs']} inputs ({counts['ties']} tied inputs left out); trained on {counts['trained_on']} of "
        f"them, {counts['trained_on_accepted']} served answers nobody corrected, and {counts['replayed']} replayed "
        f"rows of the champion's training data; {counts['checkpoint_picking']} feedback rows picked the checkpoint; "
        f"judged on {counts['audit']} audit labels.</p>"
        f"<table><tr><th>set</th><th>n</th><th>champion</th><th>challenger</th><th>difference [95%]</th>"
        f"<th>paired bootstrap p</th><th>McNemar p</th></tr>{rows}</table>"
        f"<h2>Label check</h2><p>{html.escape(training.label_check)}</p>"
        + (
            f"<table><tr><th>dropped row</th><th>label</th><th>suggested</th><th>p(label)</th></tr>{dropped}</table>"
            if dropped
            else ""
        )
        + f"<h2>Gate settings</h2><pre>{yaml.safe_dump(decision.to_dict()['settings'])}</pre>"
    )
