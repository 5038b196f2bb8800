"""Slices: per-slice accuracy through fairlearn's MetricFrame, the worst slice and the gap, and
slices too small to name."""

import numpy as np

from fmloop.trust.slices import MIN_ROWS, length_buckets, slice_metrics


def _logits(correct: np.ndarray, y: np.ndarray) -> np.ndarray:
    out = np.zeros((len(y), 2), np.float32)
    out[np.arange(len(y)), np.where(correct, y, 1 - y)] = 1.0
    return out


def test_the_worst_slice_and_the_gap_are_those_of_the_data():
    y = np.zeros(300, dtype=int)
    region = np.array(["north"] * 100 + ["south"] * 180 + ["tiny"] * 20)
    correct = np.concatenate([np.arange(100) < 90, np.arange(180) < 126, np.zeros(20, bool)])  # 0.9, 0.7, 0.0
    found = slice_metrics("classification", y, _logits(correct, y), {"region": region.tolist()})
    column = found["columns"]["region"]
    by_name = {r["name"]: r for r in column["slices"]}
    assert by_name["north"]["value"] == 0.9 and by_name["south"]["value"] == 0.7 and by_name["north"]["n"] == 100
    lo, hi = by_name["south"]["interval_95"]
    assert lo < 0.7 < hi
    assert by_name["tiny"]["n"] == MIN_ROWS and column["worst"] == "tiny"  # 20 rows: large enough to name
    assert found["worst"]["column"] == "region" and found["worst"]["name"] == "tiny"
    smaller = slice_metrics("classification", y[:-1], _logits(correct[:-1], y[:-1]), {"region": region[:-1].tolist()})
    assert smaller["columns"]["region"]["worst"] == "south"  # 19 rows: listed, never named worst
    assert smaller["columns"]["region"]["gap"] == 0.2


def test_length_buckets_cover_every_text_in_order():
    texts = ["a " * n for n in (1, 2, 3, 5, 8, 13, 21, 34)]
    buckets = length_buckets(texts)
    assert len(buckets) == len(texts) and buckets[0] != buckets[-1]
    assert buckets == sorted(buckets, key=lambda b: int(b.split("-")[0]))
