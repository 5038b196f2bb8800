"""The audit sample in Label Studio: export the sampled predictions that await a label as tasks,
import the annotations back as audit labels.

    fmloop feedback audit-export sst2 --out audit/     # tasks.json + label_config.xml
    fmloop feedback audit-import sst2 export.json      # Label Studio's JSON export

The model's answer is not pre-filled (it would sway the annotator). Importing is idempotent: each
task's label is stored under the key `label-studio:<prediction id>`, so importing the same export
twice stores nothing new, and a changed label for an imported task is reported as a conflict.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

from fmloop.core.artifacts import new_folder
from fmloop.core.errors import DataError
from fmloop.feedback.schema import AUDIT
from fmloop.feedback.store import IdempotencyConflict, NotAudited, Store, UnknownPrediction
from fmloop.label.active import label_studio_config, read_annotations


def export(store: Store, name: str, labels: list[str], out: str | Path, limit: int = 500) -> int:
    """Write the predictions of `name` awaiting an audit label as Label Studio tasks; their number."""
    waiting = [p for p in store.audit_queue(name, limit) if p.input_kind == "text"]
    tasks = [
        {"data": {"text": p.input, "prediction_id": p.id, "model": f"{p.model_name}/{p.model_version}"}}
        for p in waiting
    ]
    with new_folder(out) as tmp:
        (tmp / "tasks.json").write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
        (tmp / "label_config.xml").write_text(label_studio_config(labels))
    return len(tasks)


def import_labels(store: Store, name: str, labels: list[str], path: str) -> dict:
    """Store the annotations of an exported audit as audit labels: {"stored", "already", "skipped"}."""
    stored, already, skipped = 0, 0, []
    for row in read_annotations(path):
        prediction_id = (row.get("data") or {}).get("prediction_id")
        votes = Counter(row["labels"])
        problem = None
        if not prediction_id:
            problem = "no data.prediction_id: only tasks from `fmloop feedback audit-export` can be imported"
        elif len(votes) > 1:
            problem = f"annotators disagree: {dict(votes)}"
        elif row["labels"][0] not in labels:
            problem = f"label {row['labels'][0]!r} is not one of {labels}"
        if problem is None:
            label = row["labels"][0]
            try:
                _, created = store.add_feedback(
                    key=f"label-studio:{prediction_id}",
                    body_hash=hashlib.sha256(label.encode()).hexdigest(),
                    model_name=name,
                    label=label,
                    prediction_id=prediction_id,
                    user="label-studio",
                    kind=AUDIT,
                )
                stored, already = stored + created, already + (not created)
            except (IdempotencyConflict, NotAudited, UnknownPrediction) as err:
                problem = str(err).splitlines()[0]
        if problem:
            skipped.append({"where": row["where"], "reason": problem})
    if not stored and not already and skipped:
        raise DataError(
            f"{path}: no annotation could be imported; the first: {skipped[0]['where']}: {skipped[0]['reason']}"
        )
    return {"stored": stored, "already": already, "skipped": skipped}
