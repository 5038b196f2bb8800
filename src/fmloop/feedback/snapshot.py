"""A consistent snapshot of the feedback: every correction up to a recorded high-water id, even
while the server keeps inserting, with conflicting corrections of the same input resolved.

Feedback ids only grow, so "id <= high_water" names the same rows forever: a retrain records the
high-water id it read, and reading the same id again gives the same training set.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select

from fmloop.feedback.schema import CORRECTION, Feedback, Prediction
from fmloop.feedback.store import Store


@dataclass
class Example:
    text: str
    label: str
    votes: float  # the weight of the labels that agreed (one per label unless users carry trust weights)
    source: str = "correction"  # correction | audit | accepted (a served answer nobody corrected)


@dataclass
class Snapshot:
    model_name: str
    high_water: int  # the newest feedback id included
    examples: list[Example]
    ties: list[dict] = field(default_factory=list)  # inputs whose corrections disagree evenly: left out
    corrections: int = 0  # feedback rows read

    @property
    def labels(self) -> Counter:
        return Counter(e.label for e in self.examples)


def read_snapshot(
    store: Store,
    model_name: str,
    high_water: int | None = None,
    since: int = 0,
    kind: str = CORRECTION,
    trust: dict[str, float] | None = None,
) -> Snapshot:
    """Feedback of `kind` for `model_name` with `since` < id <= `high_water` (default: the newest
    id now), one example per input: the label with the most votes, ties reported and left out.
    A vote weighs `trust[user]` (1 for users not listed; 0 ignores a user)."""
    trust = trust or {}
    with store.session() as session:
        if high_water is None:
            high_water = session.scalar(select(Feedback.id).order_by(Feedback.id.desc()).limit(1)) or 0
        rows = session.execute(
            select(Feedback.id, Feedback.label, Feedback.user, Feedback.input, Prediction.input)
            .outerjoin(Prediction, Feedback.prediction_id == Prediction.id)
            .where(
                Feedback.model_name == model_name,
                Feedback.kind == kind,
                Feedback.id > since,
                Feedback.id <= high_water,
            )
            .order_by(Feedback.id)
        ).all()
    votes: dict[str, Counter] = {}
    for _, label, user, own_input, predicted_input in rows:
        text = own_input if own_input is not None else predicted_input
        if text is None or text.startswith("sha256:"):
            continue  # an image's digest: its pixels are not stored
        weight = trust.get(user, 1.0) if user is not None else 1.0
        if weight > 0:
            votes.setdefault(text, Counter())[label] += weight
    examples, ties = [], []
    for text, counter in votes.items():
        ranked = counter.most_common()
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            ties.append({"input": text[:200], "votes": dict(counter)})
            continue
        examples.append(Example(text, ranked[0][0], ranked[0][1], kind))
    return Snapshot(model_name, high_water, examples, ties, len(rows))
