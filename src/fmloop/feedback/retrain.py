"""`fmloop retrain NAME`: a challenger fine-tuned from users' feedback, promoted only through the
gate, which judges it on labels it never trained on.

A retrain trains a challenger:
1. Read a snapshot of the feedback up to a high-water id H: the corrections since the champion's own
   snapshot and every audit label (conflicts resolved by majority, optionally weighed by trust).
2. Build the training set: the corrections (minus those confident learning flags as likely wrong)
   and the audit labels, minus a fifth of them held out to pick the best checkpoint (labels, never
   the champion's own answers), plus served answers nobody corrected and a replay sample of the
   champion's own training data, so the challenger does not forget what it knew.
3. Fine-tune the challenger from the champion (or from its base) with the champion's recipe, the
   reading (length, truncation) chosen from the new rows.
4. Register it as a pending challenger, and score it offline on the newest inputs the champion
   served that it never trained on: where the two disagree, a uniform random sample is put in the
   audit queue (only there can a label tell the two apart; labels per decision fall by about the
   inverse of the disagreement rate).
5. Judge it (gate.py) on the audit labels that arrived after H (none yet, usually: it waits).

While a challenger is pending, `fmloop retrain NAME` (and each `fmloop loop` pass) judges it again
on the labels that arrived since, and promotes it (old champion to @previous), refuses it, or says
how many more labels it needs. Every look is valid: the test is anytime-valid.

A failure before registration changes nothing in the registry; registration completes before any
alias moves, so a kill at any point leaves the aliases on complete, loadable versions. `resume=True`
continues an interrupted run from what it wrote: the same snapshot, the challenger's last
checkpoint, the version it registered.
"""

from __future__ import annotations

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
from fmloop.core.errors import DataError, FmloopError, Interrupted, NotEnoughFeedback
from fmloop.core.faults import crash_point
from fmloop.core.html import CSS
from fmloop.feedback.config import RetrainConfig
from fmloop.feedback.gate import PENDING, REFUSED, Decision, GateSettings, TrustGuard, decide
from fmloop.feedback.inputs import inputs_for
from fmloop.feedback.schema import AUDIT
from fmloop.feedback.snapshot import Example, Snapshot, read_snapshot
from fmloop.feedback.store import Store
from fmloop.label.issues import text_label_issues
from fmloop.models.loading import load, resolve
from fmloop.registry import models as registry
from fmloop.registry.names import check_name
from fmloop.registry.recipe import training_recipe
from fmloop.registry.tracking import track_quietly
from fmloop.tasks import Task, get_task
from fmloop.train import finetune
from fmloop.train.config import FinetuneConfig
from fmloop.trust.robustness import accuracy_lost, text_robustness
from fmloop.trust.slices import automatic_slices, worst_slice_values

log = logging.getLogger(__name__)

HIGH_WATER_TAG = "fmloop.feedback_high_water"
GATE_TAG = "fmloop.gate"  # pending | passed | refused
INDEX_TAG = "fmloop.gate_index"  # the challenger's place among its model's challengers (alpha spending)
AGAINST_TAG = "fmloop.gate_champion"  # the champion it was trained to replace
RATE_TAG = "fmloop.disagreement_rate"


@dataclass
class TrainingSet:
    """What the challenger learns from, all from one feedback snapshot."""

    snapshot: Snapshot  # the corrections since the champion's snapshot
    audit: list[Example]  # audit labels up to the same high-water id (trained on too)
    rows: list[tuple[object, str]]  # the challenger's training rows (input, label): feedback rows + replay
    picking: list[Example]  # held-out labels that pick the checkpoint
    dropped: list[dict] = field(default_factory=list)  # corrections the label check flagged
    label_check: str = ""  # what the label check did
    counts: dict = field(default_factory=dict)


def plan(
    store: Store,
    champion: registry.Version,
    cfg: RetrainConfig,
    since: int,
    high_water: int,
    pool: list[tuple[object, str]],
    modality: str = "text",
    task: Task | str = "classification",
):
    """The training set for a challenger of `champion`, or a clear error when there is nothing to
    train on (raised before anything is written). `pool`: the champion's training rows (input,
    stored label), which the replay samples. Labels are in the form the store keeps them (a class
    name, a JSON list of names, a number; tasks/catalog.py): those the champion cannot have given
    are left out."""
    task = get_task(task)
    labels = champion.labels
    valid = lambda label: task.target_of(label, labels) is not None  # noqa: E731
    snapshot = read_snapshot(store, champion.name, high_water, since=since, trust=cfg.trust)
    audit = [
        e for e in read_snapshot(store, champion.name, high_water, kind=AUDIT, trust=cfg.trust).examples
        if valid(e.label)
    ]  # fmt: skip
    if len(snapshot.examples) < cfg.min_corrections:
        raise NotEnoughFeedback(
            f"{len(snapshot.examples)} corrected inputs for {champion.name} in feedback ids {since + 1}..{high_water} "
            f"(min_corrections {cfg.min_corrections}): nothing to retrain on yet. The registry is unchanged."
        )
    audited = {e.text for e in audit}  # a labeller's audit label wins over a user's correction
    corrections = [e for e in snapshot.examples if valid(e.label) and e.text not in audited]
    rng = random.Random(cfg.seed)
    corrections, capped = cap_identities(corrections, len(audit), cfg.max_identity_share, rng)
    if capped and len(corrections) < cfg.min_corrections:
        raise NotEnoughFeedback(
            f"{len(corrections)} corrected inputs of {champion.name} remain once no identity makes more than "
            f"{cfg.max_identity_share:.0%} of them ({capped}; min_corrections {cfg.min_corrections}): too few "
            f"identities have sent feedback. Raise max_identity_share if these senders are trusted. "
            f"The registry is unchanged."
        )
    if task.single_class and len({e.label for e in corrections + audit}) < 2:
        raise NotEnoughFeedback(
            f"All {len(corrections)} usable corrections of {champion.name} carry one label "
            f"({corrections[0].label if corrections else 'none'!r}): a challenger needs labels of at least two "
            f"classes. The registry is unchanged."
        )
    taken = audited | {e.text for e in corrections}
    accepted = [
        Example(text, label, 0.0, "accepted")
        for text, label in dict(
            store.accepted(champion.name, high_water, round(cfg.accepted_ratio * len(corrections)))
        ).items()
        if text not in taken and valid(label)
    ]
    n_replay = min(len(pool), int(round(cfg.replay_ratio * len(corrections))))
    replay = [pool[i] for i in rng.sample(range(len(pool)), n_replay)]
    if task.has_classes:  # the challenger's classes come from its training rows: every class needs one
        replay += missing_classes(replay + [(e.text, e.label) for e in corrections + audit], pool, labels, task)
    dropped, note = [], "off"
    if cfg.label_check and modality != "text":
        note = "off: the label check reads text features"
    elif cfg.label_check and not task.single_class:
        note = f"off: the label check reads one class per row ({task.name})"
    elif cfg.label_check:
        corrections, dropped, note = check_labels(corrections, replay, labels, cfg.seed)
    # A fifth of the labels (corrections and audit labels, never the champion's own answers) is
    # held out to pick the challenger's best checkpoint.
    feedback = corrections + audit
    rng.shuffle(feedback)
    n_pick = max(1, len(feedback) // 5)
    picking, feedback = feedback[:n_pick], feedback[n_pick:]
    rows = [(e.text, e.label) for e in feedback + accepted] + replay
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
        "capped_per_identity": capped,
        "dropped_by_label_check": len(dropped),
        "checkpoint_picking": len(picking),
        "trained_on": sum(e.source == "correction" for e in feedback),
        "trained_on_audit": sum(e.source == AUDIT for e in feedback),
        "trained_on_accepted": len(accepted),
        "replayed": len(replay),
    }
    return TrainingSet(snapshot, audit, rows, picking, dropped, note, counts)


def missing_classes(rows, pool, labels: list[str], task: Task) -> list:
    """Rows of `pool` that bring each class `rows` never names (one per class, the first found): a
    stored label names its class, the classes of a label set, or a sentence's tags."""
    named = lambda label: task.named_classes(task.target_of(label, labels))  # noqa: E731
    present = set().union(*(named(label) for _, label in rows))
    extra = []
    for j in range(len(labels)):
        if j not in present:
            extra += [row for row in pool if j in named(row[1])][:1]
    return extra


def cap_identities(
    corrections: list[Example], others: int, share: float, rng: random.Random
) -> tuple[list[Example], dict[str, int]]:
    """(kept corrections, {identity: rows left out}) so that the corrections one identity alone
    backs make at most `share` of the challenger's feedback rows (these corrections plus `others`
    audit labels): an identity over it keeps a random sample of share/(1-share) times what everyone
    else brings. A correction two identities agree on belongs to neither alone; rows stored without
    an identity are not capped. Repeated until no identity is over, since each cut shrinks the total."""
    if share >= 1:
        return corrections, {}
    kept, capped = list(corrections), {}
    while True:
        owned: dict[str, list[Example]] = {}
        for e in kept:
            if len(e.users) == 1:
                owned.setdefault(e.users[0], []).append(e)
        total = len(kept) + others
        over = {user: rows for user, rows in owned.items() if len(rows) > share * total}
        if not over:
            return kept, capped
        user, rows = max(over.items(), key=lambda item: (len(item[1]), item[0]))  # the largest first
        allowed = int(share / (1 - share) * (total - len(rows)))
        dropped = {id(e) for e in rng.sample(rows, len(rows) - allowed)}
        kept = [e for e in kept if id(e) not in dropped]
        capped[user] = capped.get(user, 0) + len(dropped)


def check_labels(feedback: list[Example], replay, labels: list[str], seed: int):
    """(kept corrections, dropped ones, what was done): confident learning on TF-IDF features of the
    corrections and the replayed rows; only corrections are dropped (the replay is the champion's
    curated data, audit labels come from labellers)."""
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


def pending_challenger(champion: registry.Version) -> registry.Version | None:
    """The challenger of `champion` that waits for labels, if one does. One that waited for an
    earlier champion is refused (the champion it was to replace is gone); one that became the
    champion (a promotion interrupted before its tag moved) is marked as passed."""
    waiting = [v for v in registry.versions(champion.name) if v.tags.get(GATE_TAG) == PENDING]
    current = None
    for version in waiting:
        if version.version == champion.version:
            registry.set_tags(champion.name, version.version, {GATE_TAG: "passed"})
        elif version.tags.get(AGAINST_TAG) != champion.reference:
            registry.set_tags(champion.name, version.version, {GATE_TAG: REFUSED})
            log.info("%s: refused: it waited to replace %s, which is no longer @champion", version.reference,
                     version.tags.get(AGAINST_TAG))  # fmt: skip
        elif current is None or version.version > current.version:
            current = version
    return current


def challenger_index(name: str) -> int:
    """The place the next challenger of `name` takes among those the gate has judged (from 1)."""
    return 1 + sum(GATE_TAG in v.tags for v in registry.versions(name))


def run(cfg: RetrainConfig, out: str | Path, *, resume: bool = False) -> RunDir:
    """Train a challenger and ask for the labels that judge it, or, when a challenger of the
    champion is pending, judge it on the labels that arrived."""
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
    champion_model = load(champion.reference, device="cpu")
    recipe, data_path = training_recipe(champion)
    labels = champion.labels
    inputs = inputs_for(champion_model, store)
    champion_data = inputs.champion_data(
        data_path,
        labels,
        seed=recipe.get("train", {}).get("seed", 42),
        validation_fraction=recipe.get("data", {}).get("validation_fraction", 0.1),
    )
    waiting = registry.get(earlier["challenger"]) if earlier and earlier.get("kind") == "review" else None
    if earlier is None:
        waiting = pending_challenger(champion)
    if waiting is not None:
        return review(cfg, run, store, champion, waiting, champion_data, inputs, labels, resumed=earlier is not None)
    if cfg.judge_only:
        reason = f"no challenger of {champion.reference} waits for labels: nothing to judge (judge_only)"
        log.info(reason)
        run.create()
        run.write_config(cfg.resolved())
        run.write_manifest(kind="review", status="finished", champion=champion.reference, challenger=None,
                           decision="none", promoted=False, reason=reason, metrics={})  # fmt: skip
        return run

    since = int(champion.tags.get(HIGH_WATER_TAG, "0") or 0)
    if earlier is not None:
        high_water = earlier["feedback"]["high_water"]
    else:
        high_water = cfg.high_water if cfg.high_water is not None else store.high_water()
    training = plan(store, champion, cfg, since, high_water, champion_data.pool, inputs.modality, inputs.task)

    if earlier is None:
        run.create()
    run.write_config(cfg.resolved())
    inputs.write_split(run.path / "data", "train", training.rows)
    inputs.write_split(run.path / "data", "validation", [(e.text, e.label) for e in training.picking])
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
        "retraining %s on %d corrections and %d audit labels (+%d answers nobody corrected, %d replayed rows of its "
        "training data); %d held-out labels pick the checkpoint",
        champion.reference,
        training.counts["trained_on"],
        training.counts["trained_on_audit"],
        training.counts["accepted"],
        training.counts["replayed"],
        len(training.picking),
    )

    champion_folder = resolve(champion.reference)
    challenger_run = train_challenger(cfg, recipe, champion_folder, run.path / "challenger")
    trained_labels = challenger_run.read_manifest().get("labels")
    if trained_labels and trained_labels != labels:
        raise FmloopError(
            f"The challenger learned the classes {trained_labels}, not the champion's {labels}; the registry is "
            f"unchanged."
        )
    track_quietly(challenger_run.path)
    crash_point("retrain:trained")

    version = registry.registered_from(champion.name, challenger_run.path) or registry.register(
        challenger_run.path,
        champion.name,
        description=f"challenger of {champion.reference}, trained on feedback ids {since + 1}..{high_water}",
        tags={
            HIGH_WATER_TAG: str(high_water),
            GATE_TAG: PENDING,
            INDEX_TAG: str(challenger_index(champion.name)),
            AGAINST_TAG: champion.reference,
        },
    )
    crash_point("retrain:registered")
    trained = {text for text, _ in training.rows if isinstance(text, str)} | {e.text for e in training.picking}
    shadow = shadow_scores(store, champion, challenger_run.model_dir, trained, version, cfg, inputs)
    registry.set_tags(champion.name, version.version, {RATE_TAG: repr(shadow["disagreement_rate"])})
    version = registry.get(version.reference)
    log.info(
        "%s disagrees with %s on %d of %d recent served inputs it never trained on",
        version.reference, champion.reference, shadow["disagreements"], shadow["scored"],
    )  # fmt: skip
    return review(cfg, run, store, champion, version, champion_data, inputs, labels, training=training, shadow=shadow)


def shadow_scores(store: Store, champion, challenger_folder: Path, trained: set[str], version, cfg, inputs) -> dict:
    """Score the challenger on the newest inputs the champion served (those it never trained on):
    the share where its answer differs from the champion's, and a uniform random order of those
    inputs' prediction ids (`ask`), the same on a resumed run."""
    served = [
        row
        for row in store.served(champion.name, champion.version, cfg.shadow_n, kind=inputs.modality)
        if row[1] not in trained
    ]
    if not served:
        return {"scored": 0, "disagreements": 0, "disagreement_rate": 1.0, "ask": []}
    model = load(challenger_folder, device="cpu")
    seen = inputs.read([key for _, key, _ in served])
    logits = model.logits(seen)
    if inputs.task.single_class:  # against the class the champion served
        disagree = [pid for (pid, _, label), k in zip(served, logits.argmax(-1)) if model.labels[k] != label]
    else:  # label sets and scores: the champion scored again, compared as the task compares answers
        same = inputs.task.agreement(load(champion.reference, device="cpu").logits(seen), logits)
        disagree = [pid for (pid, _, _), agree in zip(served, same) if not agree]
    random.Random(f"{cfg.seed}-{version.version}").shuffle(disagree)
    return {
        "scored": len(served),
        "disagreements": len(disagree),
        "disagreement_rate": len(disagree) / len(served),
        "ask": disagree[: cfg.shadow_labels],
    }


def review(
    cfg, run: RunDir, store, champion, challenger, data, inputs, labels, training=None, resumed=False, shadow=None
) -> RunDir:
    """Judge a pending challenger on the audit labels that arrived after its snapshot; promote,
    refuse or leave it pending, and write the decision, the report and the manifest. A new
    challenger (`shadow`: its offline scores) that is left pending asks for its audit labels."""
    if training is None:
        if not resumed:
            run.create()
        run.write_config(cfg.resolved())
        run.write_manifest(kind="review", status="running", config_hash=config_hash(cfg.resolved()),
                           champion=champion.reference, challenger=challenger.reference)  # fmt: skip
    high_water = int(challenger.tags.get(HIGH_WATER_TAG, "0") or 0)
    target = [
        e for e in read_snapshot(store, champion.name, since=high_water, kind=AUDIT, trust=cfg.trust).examples
        if inputs.task.target_of(e.label, labels) is not None
    ]  # fmt: skip
    index = int(challenger.tags.get(INDEX_TAG, "1"))
    rate = float(challenger.tags.get(RATE_TAG, "1.0"))
    decision, scores = judge(champion, challenger, target, data, inputs, labels, cfg, index, rate)
    atomic_write_json(run.path / "decision.json", decision.to_dict())
    atomic_write_json(run.path / "scores.json", scores)  # what the drills replay (bench/gate_drills.py)
    if shadow is not None:
        asked = shadow.pop("ask")
        # Only a challenger that may still win asks for labels (one that forgets is refused at once).
        shadow["requested"] = store.request_audit(asked, challenger.reference) if decision.outcome == PENDING else 0
        atomic_write_json(run.path / "shadow.json", shadow)
        log.info("%s asked for %d audit labels", challenger.reference, shadow["requested"])
    promoted = bool(decision.promote and cfg.promote)
    if promoted:
        registry.promote(champion.name, challenger.version)
    crash_point("retrain:promoted")
    if decision.outcome != PENDING:  # after the promotion: a kill between the two is read as passed
        registry.set_tags(champion.name, challenger.version, {GATE_TAG: "passed" if decision.promote else REFUSED})
    atomic_write_text(run.path / "report.html", report(champion, challenger, decision, promoted, training))
    run.write_manifest(
        status="finished",
        challenger=challenger.reference,
        decision=decision.outcome,
        promoted=promoted,
        reason=decision.reason,
        labels_needed=decision.evidence.labels_needed,
        metrics={
            f"{side}_{which}": getattr(getattr(decision, which), side)
            for which in ("target", "guard")
            for side in ("champion", "challenger")
            if getattr(decision, which).n
        },
    )
    log.info("%s: %s", challenger.reference, decision.reason)
    track_quietly(run.path)
    return run


def train_challenger(cfg: RetrainConfig, recipe: dict, champion_folder: Path, out: Path) -> RunDir:
    """The challenger's fine-tuning run (continued from its last checkpoint when one is there)."""
    existing = RunDir(out)
    if existing.manifest_path.exists() and existing.read_manifest().status == "finished":
        return existing
    start = str(champion_folder) if cfg.start == "champion" else recipe["model"]["name"]
    tree = deep_merge(recipe, {"model": {"name": start}, "data": {"path": str(out.parent / "data")}})
    # The reading (length, truncation) is chosen again from the new rows, not the champion's data,
    # and the head's rate by the rule for a continued head.
    chosen_again = ("max_length", "truncation", "head_lr_scale")
    recipe_train = {k: v for k, v in tree.get("train", {}).items() if k not in chosen_again}
    tree["train"] = deep_merge(recipe_train, cfg.train)
    if cfg.strategy:
        tree["strategy"] = cfg.strategy
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


def judge(champion, challenger, target: list[Example], data, inputs, labels, cfg, index: int, rate: float):
    """Score both models on the same examples through the one scoring path: (the gate's decision,
    the labels and both models' answers on each set, in order)."""
    old = load(champion.reference, device="cpu")
    new = load(challenger.reference, device="cpu")
    task = inputs.task
    val_inputs, val_y = data.validation, np.asarray(data.validation_y)
    old_v, new_v = old.logits(val_inputs), new.logits(val_inputs)
    seen = inputs.read([e.text for e in target])
    y = task.stack([task.target_of(e.label, labels) for e in target], labels)
    none = np.zeros((0, *old_v.shape[1:]), dtype=old_v.dtype)  # no labels yet: logits of no input
    old_t = old.logits(seen) if len(target) else none
    new_t = new.logits(seen) if len(target) else none
    settings = GateSettings(
        cfg.alpha, cfg.tolerance, cfg.margin, cfg.max_labels, cfg.slice_tolerance, cfg.robustness_tolerance
    )
    decision = decide(
        (y, old_t, new_t), (val_y, old_v, new_v), index, rate, settings,
        target_name="the audit labels since its snapshot", task=task, labels=labels,
    )  # fmt: skip
    # the trust checks cost a dozen scorings: only where they can decide; their slices and
    # perturbations are of texts with one class each
    if decision.forgetting.passed and inputs.modality == "text" and task.single_class:
        trust = trust_guard(old, new, val_inputs, val_y, old_v, new_v, cfg.robustness_rows, cfg.seed)
        decision = decide(
            (y, old_t, new_t), (val_y, old_v, new_v), index, rate, settings,
            target_name="the audit labels since its snapshot", trust=trust, task=task, labels=labels,
        )  # fmt: skip
    # What the drills replay (bench/gate_drills.py): classes for a classifier, tags for a tagger,
    # else the logits.
    answer = task.targets_from if task.single_class or task.name == "tokens" else (lambda logits: logits.tolist())
    scores = {
        name: {"y": truth.tolist(), "champion": answer(a), "challenger": answer(b)}
        for name, truth, a, b in (("target", y, old_t, new_t), ("guard", val_y, old_v, new_v))
    }
    return decision, scores


GATE_SLICE_ROWS = 50  # smaller slices move by several points from noise alone


def trust_guard(old, new, texts: list[str], y: np.ndarray, old_logits, new_logits, rows: int, seed: int) -> TrustGuard:
    """Where the challenger loses most against the champion on the guard set's slices (length,
    language; slices of GATE_SLICE_ROWS+ rows), and the accuracy each model loses under the
    perturbation suite on `rows` of it."""
    slices = automatic_slices(texts, len(texts))
    before = worst_slice_values("classification", y, old_logits, slices, GATE_SLICE_ROWS)
    after = worst_slice_values("classification", y, new_logits, slices, GATE_SLICE_ROWS)
    guard = TrustGuard()
    if before:
        key = min(before, key=lambda k: after[k] - before[k])
        guard.worst_slice = f"{key[0]} = {key[1]}"
        guard.slice_rows = int(sum(1 for v in slices[key[0]] if v == key[1]))
        guard.slice_champion, guard.slice_challenger = before[key], after[key]
    if rows and texts:
        pick = np.random.default_rng(seed).permutation(len(texts))[:rows]
        sample, sample_y = [texts[i] for i in pick], y[pick]
        guard.robustness_rows = len(pick)
        guard.robust_champion = accuracy_lost(text_robustness(old, sample, sample_y, seed)["summary"])
        guard.robust_challenger = accuracy_lost(text_robustness(new, sample, sample_y, seed)["summary"])
    log.info(
        "trust: worst slice %s %s -> %s; accuracy lost under perturbations %s -> %s",
        guard.worst_slice, guard.slice_champion, guard.slice_challenger, guard.robust_champion, guard.robust_challenger,
    )  # fmt: skip
    return guard


def trust_rows(trust: TrustGuard) -> str:
    rows = ""
    if trust.worst_slice is not None:
        rows += (
            f"<tr><td>worst slice: {html.escape(trust.worst_slice)}</td><td>{trust.slice_rows}</td>"
            f"<td>{trust.slice_champion:.4f}</td><td>{trust.slice_challenger:.4f}</td>"
            f"<td>{trust.slice_difference:+.4f}</td></tr>"
        )
    if trust.robust_champion is not None:
        rows += (
            f"<tr><td>accuracy lost under perturbations</td><td>{trust.robustness_rows}</td>"
            f"<td>{trust.robust_champion:.4f}</td><td>{trust.robust_challenger:.4f}</td>"
            f"<td>{trust.robustness_difference:+.4f}</td></tr>"
        )
    if not rows:
        return ""
    return (
        "<h2>Slices and robustness (on the champion's validation set)</h2><table><tr><th>check</th><th>rows</th>"
        f"<th>champion</th><th>challenger</th><th>difference</th></tr>{rows}</table>"
    )


def report(champion, challenger, decision: Decision, promoted: bool, training: TrainingSet | None) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(c.name)}</td><td>{c.n}</td><td>{c.champion:.4f}</td><td>{c.challenger:.4f}</td>"
        f"<td>{c.difference:+.4f} [{c.interval[0]:+.4f}, {c.interval[1]:+.4f}]</td>"
        f"<td>{c.discordant[0]} / {c.discordant[1]}</td></tr>"
        for c in (decision.target, decision.guard)
    )
    ev, ni = decision.evidence, decision.forgetting
    needed = "" if ev.labels_needed is None else f"; about {ev.labels_needed} more labels at the rates so far"
    outcome = {"promoted": "promoted to @champion", "pending": "pending: waiting for labels"}.get(
        decision.outcome, "not promoted"
    )
    if decision.promote and not promoted:
        outcome = "passed the gate (not promoted: promote is off)"
    trained = ""
    if training is not None:
        counts = training.counts
        dropped = "".join(
            f"<tr><td>{html.escape(d['input'])}</td><td>{html.escape(d['label'])} ({d['source']})</td>"
            f"<td>{html.escape(d['suggested'])}</td><td>{d['p_label']:.3f}</td></tr>"
            for d in training.dropped[:100]
        )
        trained = (
            f"<h2>Training</h2><p>Feedback ids {counts['since'] + 1}..{counts['high_water']}: {counts['corrections']} "
            f"corrections of {counts['inputs']} inputs ({counts['ties']} tied inputs left out); trained on "
            f"{counts['trained_on']} corrections, {counts['trained_on_audit']} audit labels, "
            f"{counts['trained_on_accepted']} served answers nobody corrected, and {counts['replayed']} replayed rows "
            f"of the champion's training data; {counts['checkpoint_picking']} held-out labels picked the "
            f"checkpoint.</p><h3>Label check</h3><p>{html.escape(training.label_check)}</p>"
            + (
                f"<table><tr><th>dropped row</th><th>label</th><th>suggested</th><th>p(label)</th></tr>{dropped}"
                "</table>"
                if dropped
                else ""
            )
        )
    low, high = decision.gain[1], decision.gain[2]
    return (
        f"<!doctype html><meta charset='utf-8'><title>retrain {champion.name}</title><style>{CSS}</style>"
        f"<h1>{challenger.reference} against {champion.reference}</h1><p><b>{outcome}.</b> "
        f"{html.escape(decision.reason)}</p>"
        f"<h2>Evidence</h2><p>Labels read: {ev.labels} ({ev.wins} where only the challenger was right, {ev.losses} "
        f"where only the champion was). Evidence (betting wealth) {ev.e_value:.3g}; it proves a gain at "
        f"1/alpha = {ev.threshold:.3g} (this challenger's alpha: {ev.alpha:.4g}){html.escape(needed)}. The two "
        f"disagree on {decision.disagreement_rate:.1%} of the recent served inputs: estimated gain on the served "
        f"stream {decision.gain[0]:+.4f} [{low:+.4f}, {high:+.4f}]. Forgetting: {ni.difference:+.4f} on "
        f"{ni.n} validation rows, {1 - ni.alpha:.0%} lower bound {ni.lower_bound:+.4f} against the margin "
        f"-{ni.margin:g} ({'non-inferior' if ni.passed else 'not shown non-inferior'}).</p>"
        f"<table><tr><th>set</th><th>n</th><th>champion</th><th>challenger</th><th>difference [95%]</th>"
        f"<th>only challenger / only champion right</th></tr>{rows}</table>"
        + trust_rows(decision.trust)
        + trained
        + f"<h2>Gate settings</h2><pre>{yaml.safe_dump(decision.to_dict()['settings'])}</pre>"
    )
