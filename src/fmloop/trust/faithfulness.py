"""Does an explanation point at what the model actually uses? A deletion test against chance.

For each text, its k most-attributed words (those that raised the explained answer most) are
deleted, and so are k words drawn at random (several draws); the model rescores both. A faithful
explanation makes the first drop the answer's confidence more than the second, at every fraction
of words deleted. Averaged over a sample of texts, with a paired bootstrap interval on the
difference: an explanation method that scores words at random can only tie, so the check cannot be
passed by a method that does not track the model.
"""

from __future__ import annotations

import numpy as np

from fmloop.models.inference import InferenceModel
from fmloop.tasks.bootstrap import mean_interval
from fmloop.trust.explain import Explanation, _served_numpy, without_words, word_spans

FRACTIONS = (0.1, 0.2, 0.3, 0.5)
RANDOM_DRAWS = 5
MIN_WORDS = 4  # shorter texts have no meaningful fraction to delete
HEADLINE = 0.2  # the fraction the summary quotes


def deletion_curve(
    model: InferenceModel,
    texts: list[str],
    explanations: list[Explanation],
    fractions: tuple[float, ...] = FRACTIONS,
    draws: int = RANDOM_DRAWS,
    seed: int = 0,
    batch_size: int = 64,
) -> dict:
    """{fractions: [{fraction, top_drop, random_drop, difference, interval_95, ratio}], n, headline}
    over the texts with at least MIN_WORDS words; drops are in the explained output's units
    (probability for classifiers)."""
    rng = np.random.default_rng(seed)
    used = [(t, e) for t, e in zip(texts, explanations) if e.target is not None and len(word_spans(t)) >= MIN_WORDS]
    if not used:
        return {"n": 0, "fractions": [], "headline": None}
    variants, index = [], []  # index: (text i, fraction j, 0 = top / 1.. = random draw)
    for i, (text, e) in enumerate(used):
        spans = word_spans(text)
        order = np.argsort([-w["score"] for w in e.words], kind="stable")
        for j, f in enumerate(fractions):
            k = max(1, int(round(f * len(spans))))
            variants.append(without_words(text, spans, set(order[:k].tolist())))
            index.append((i, j, 0))
            for d in range(draws):
                variants.append(without_words(text, spans, set(rng.choice(len(spans), k, replace=False).tolist())))
                index.append((i, j, d + 1))
    outputs = _served_numpy(model, model.logits(variants, batch_size))
    labels = model.labels
    targets = np.array([labels.index(e.target) for _, e in used])
    base = np.array([e.output for _, e in used])
    top = np.zeros((len(used), len(fractions)))
    rand = np.zeros((len(used), len(fractions)))
    for (i, j, d), out in zip(index, outputs):
        drop = base[i] - out[targets[i]]
        if d == 0:
            top[i, j] = drop
        else:
            rand[i, j] += drop / draws
    rows = []
    for j, f in enumerate(fractions):
        diff = top[:, j] - rand[:, j]
        lo, hi = mean_interval(diff, rng)
        rows.append(
            {
                "fraction": f,
                "top_drop": round(float(top[:, j].mean()), 6),
                "random_drop": round(float(rand[:, j].mean()), 6),
                "difference": round(float(diff.mean()), 6),
                "interval_95": [round(lo, 6), round(hi, 6)],
                "ratio": round(float(top[:, j].mean() / rand[:, j].mean()), 3) if rand[:, j].mean() > 0 else None,
            }
        )
    headline = next((r for r in rows if abs(r["fraction"] - HEADLINE) < 1e-9), rows[0])
    return {
        "n": len(used),
        "draws": draws,
        "fractions": rows,
        "headline": headline,
        "faithful": headline["interval_95"][0] > 0,
    }


def describe(curve: dict) -> str:
    h = curve.get("headline")
    if not h:
        return "faithfulness: no text long enough to delete words from"
    ratio = f"{h['ratio']:.2f}x" if h["ratio"] is not None else "n/a"
    return (
        f"faithfulness over {curve['n']} texts: deleting the top {h['fraction']:.0%} attributed words drops "
        f"the answer's confidence by {h['top_drop']:.3f}, {h['random_drop']:.3f} for random words ({ratio}; "
        f"difference {h['difference']:+.3f}, 95% interval [{h['interval_95'][0]:+.3f}, {h['interval_95'][1]:+.3f}])"
    )
