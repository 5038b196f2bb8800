"""How a text model reads an input longer than its window, the same way in training and scoring.

    head         the first max_length tokens (the end-of-sequence token kept last)
    head+tail    the first quarter of the window and the last three quarters: reviews and
                 documents often say what they conclude at the end (Sun et al. 2019, "How to
                 Fine-Tune BERT for Text Classification?": 128 + 382 tokens read IMDb best)

Fine-tuning chooses from the training texts' token lengths (`choose_reading`) and records the
reading in the model's config (`fmloop_max_length`, `fmloop_truncation`), so evaluate, predict,
export and serve read every input exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TRUNCATIONS = ("head", "head+tail")
LONG_SHARE = 0.10  # head+tail once more than this share of the training texts overflow the window


@dataclass(frozen=True)
class Reading:
    max_length: int
    truncation: str = "head"

    def cut(self, ids: list[int], ends_special: bool) -> list[int]:
        """`ids` (special tokens included) within max_length tokens."""
        n = self.max_length
        if len(ids) <= n:
            return ids
        if self.truncation == "head+tail":
            head = n // 4
            return ids[:head] + ids[len(ids) - (n - head) :]
        return ids[: n - 1] + ids[-1:] if ends_special else ids[:n]

    def describe(self) -> str:
        return f"{self.truncation} {self.max_length} tokens"


def choose_reading(lengths: np.ndarray, window: int, max_length: int | None, truncation: str) -> Reading:
    """The reading for training texts of these token `lengths` on a model that takes `window`
    tokens: an explicit `max_length` / `truncation` win; otherwise the longest text within the
    window (batches are length-bucketed, so a few long texts cost only their own batches), and
    head+tail when more than LONG_SHARE of the texts overflow it."""
    longest = int(lengths.max()) if len(lengths) else 128
    length = max_length or int(min(window, max(16, -(-longest // 8) * 8)))
    if truncation == "auto":
        overflow = float(np.mean(lengths > length)) if len(lengths) else 0.0
        truncation = "head+tail" if overflow > LONG_SHARE else "head"
    return Reading(length, truncation)


def reading_of(config, default_length: int) -> Reading:
    """The reading a model's config records (fine-tuned by fmloop), else `default_length` tokens from the head."""
    length = getattr(config, "fmloop_max_length", None) or default_length
    truncation = getattr(config, "fmloop_truncation", None) or "head"
    return Reading(int(length), truncation if truncation in TRUNCATIONS else "head")


def record_reading(config, reading: Reading) -> None:
    config.fmloop_max_length = reading.max_length
    config.fmloop_truncation = reading.truncation
