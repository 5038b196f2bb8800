"""A consistent snapshot of the feedback: every correction up to a recorded high-water id, even
while the server keeps inserting, with conflicting corrections of the same input resolved.

Feedback ids only grow, so "id <= high_water" names the same rows forever: a retrain records the
high-water id it read, and reading the same id again gives the same training set.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select

from fmloop.feedback.schema import CORRECTION, ERASED, Feedback, Prediction
from fmloop.feedback.store import Store

IMAGE_PREFIX = "sha256:"  # an image input is stored as its digest; its bytes by store.image(digest)


@dataclass
class Example:
    text: str  # the text, or an image's digest
    label: str
    votes: float  # the weight of the identities that agreed (one each unless they carry trust weights)
    source: str = "correction"  # correction | audit | accepted (a served answer nobody corrected)
    users: tuple[str, ...] = ()  # the identities whose votes carried the label (none for older rows)


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
    Each identity has one vote per input (its latest label: sending a correction again, or under
    fresh idempotency keys, changes nothing), weighing `trust[identity]` (1 for identities not listed;
    0 ignores one). Rows stored without an identity vote one each."""
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
    images = {p for *_, own, p in rows if own is None and p is not None and p.startswith(IMAGE_PREFIX)}
    kept_images = store.stored_images(images)
    ballots: dict[str, dict] = {}  # input (a text, or an image's digest) -> {voter: its latest label}
    for feedback_id, label, user, own_input, predicted_input in rows:
        text = own_input if own_input is not None else predicted_input
        if text is None or text == ERASED or (text.startswith(IMAGE_PREFIX) and text not in kept_images):
            continue  # erased, or an image whose bytes were not kept (store.image gives those that were)
        ballots.setdefault(text, {})[user if user is not None else feedback_id] = label
    examples, ties = [], []
    for text, ballot in ballots.items():
        counter: Counter = Counter()
        for voter, label in ballot.items():
            weight = trust.get(voter, 1.0) if isinstance(voter, str) else 1.0
            if weight > 0:
                counter[label] += weight
        ranked = counter.most_common()
        if not ranked:
            continue
        if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
            ties.append({"input": text[:200], "votes": dict(counter)})
            continue
        label = ranked[0][0]
        users = tuple(sorted(v for v, given in ballot.items() if isinstance(v, str) and given == label))
        examples.append(Example(text, label, ranked[0][1], kind, users))
    return Snapshot(model_name, high_water, examples, ties, len(rows))
