"""The audit sample in Label Studio: export the sampled predictions that await a label as tasks,
import the annotations back as audit labels.

    fmloop feedback audit-export sst2 --out audit/     # tasks.json + label_config.xml
    fmloop feedback audit-import sst2 export.json      # Label Studio's JSON export

A tagger's tasks are labelled by marking entity spans (stored as the tags of the text's words).
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
from fmloop.label.active import label_studio_config, label_studio_ner_config, read_annotations
from fmloop.models.tokens import stored_entities


def export(store: Store, name: str, labels: list[str], out: str | Path, limit: int = 500, tagger: bool = False) -> int:
    """Write the predictions of `name` awaiting an audit label as Label Studio tasks; their number.
    A tagger's (`tagger`) are labelled by marking entity spans of its types."""
    waiting = [p for p in store.audit_queue(name, limit) if p.input_kind == "text"]
    tasks = [
        {"data": {"text": p.input, "prediction_id": p.id, "model": f"{p.model_name}/{p.model_version}"}}
        for p in waiting
    ]
    with new_folder(out) as tmp:
        (tmp / "tasks.json").write_text(json.dumps(tasks, indent=1, ensure_ascii=False) + "\n")
        (tmp / "label_config.xml").write_text((label_studio_ner_config if tagger else label_studio_config)(labels))
    return len(tasks)


def import_labels(store: Store, name: str, labels: list[str], path: str, tagger: bool = False) -> dict:
    """Store the annotations of an exported audit as audit labels: {"stored", "already", "skipped"}.
    A tagger's annotations are entity spans, stored as the tags of the text's words."""
    stored, already, skipped = 0, 0, []
    for row in read_annotations(path, spans=tagger):
        prediction_id = (row.get("data") or {}).get("prediction_id")
        answers = [tuple(spans) for spans in row["entities"]] if tagger else row["labels"]
        votes = Counter(answers)
        problem, label = None, None
        if not prediction_id:
            problem = "no data.prediction_id: only tasks from `fmloop feedback audit-export` can be imported"
        elif len(votes) > 1:
            problem = f"annotators disagree: {dict(votes)}"
        elif tagger:
            try:
                label = stored_entities(list(answers[0]), row["text"], labels)
            except ValueError as err:
                problem = str(err)
        elif answers[0] not in labels:
            problem = f"label {answers[0]!r} is not one of {labels}"
        else:
            label = answers[0]
        if problem is None:
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
