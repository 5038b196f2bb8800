"""What text and image data share: the file and folder names that mean a split, and seeded,
stratified index selection."""

from __future__ import annotations

import numpy as np

# file or folder stem -> the split it holds
SPLIT_NAMES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}


def stratified_holdout(labels: np.ndarray | None, n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) indices, both sorted: `fraction` of every class held out (at least one per
    class with two or more members); without labels, `fraction` of all rows."""
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
        cut = max(1, int(round(n * fraction)))
        return np.sort(order[cut:]), np.sort(order[:cut])
    held = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        held.extend(idx[: max(1, int(round(len(idx) * fraction)))] if len(idx) > 1 else [])
    held = np.sort(np.asarray(held, np.int64))
    return np.setdiff1d(np.arange(n), held), held


def per_class_sample(labels: np.ndarray, limit: float, seed: int) -> np.ndarray:
    """Sorted indices of `limit` examples of each class (below 1: that fraction of each class)."""
    rng = np.random.default_rng([seed, 17])
    keep = []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        keep.extend(idx[: int(limit) if limit >= 1 else max(1, int(round(len(idx) * limit)))])
    return np.sort(np.asarray(keep, np.int64))
