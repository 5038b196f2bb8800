"""Text cleaning: pure per-row filters, exact and near-duplicate detection, cross-split leakage.

Each row of each split is scanned once (train first, so validation/test rows can be checked
against it) and gets a verdict: kept (with its normalised text) or removed with a reason:

    empty        nothing left after normalisation
    too_short    fewer than `min_words` words        too_long   more than `max_words`
    language     detected language not in `languages` (py3langid, which ships its model)
    duplicate    same normalised text as an earlier row of the same split
    near_duplicate  MinHash-LSH Jaccard of word shingles >= `near_threshold` with an earlier row
    leak         a validation/test row whose text (exactly or nearly) is in train

Normalisation (`normalize_text`) repairs mojibake and Unicode (ftfy), turns HTML line breaks
into spaces, strips other tags, unescapes entities and collapses whitespace. Duplicate keys are
computed on a stronger fold (lower case, no punctuation) so case and punctuation changes still match.
"""

from __future__ import annotations

import hashlib
import html
import re
import unicodedata
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from pydantic import Field

from fmloop.core.config import StageConfig

_BREAK = re.compile(r"<\s*br\s*/?\s*>", re.IGNORECASE)
_TAG = re.compile(r"</?[a-zA-Z][^<>]{0,200}>")
_SPACE = re.compile(r"\s+")
_NOT_WORD = re.compile(r"[^\w\s]", re.UNICODE)


class CleanSettings(StageConfig):
    normalize: bool = Field(True, description="repair mojibake/Unicode (ftfy), strip HTML remnants, collapse spaces")
    min_words: int = Field(1, ge=0)
    max_words: int | None = Field(None, ge=1)
    languages: list[str] | None = Field(None, description="keep only these ISO 639-1 codes, e.g. [en]")
    language_min_words: int = Field(
        8, ge=1, description="shorter rows are not language-filtered (too little text to identify reliably)"
    )
    dedup: bool = Field(True, description="drop exact duplicates (after case and punctuation folding)")
    near_dedup: bool = Field(True, description="drop near-duplicates (MinHash LSH over word shingles)")
    near_threshold: float = Field(0.6, gt=0, lt=1, description="Jaccard similarity that counts as a near-duplicate")
    shingle: int = Field(
        2, ge=1, le=10, description="words per shingle (2: tolerant of dropped and swapped words, still order-aware)"
    )
    num_perm: int = Field(128, ge=16, le=1024, description="MinHash permutations")
    leakage: bool = Field(True, description="drop validation/test rows whose text (or image) is (nearly) in train")
    image_distance: int = Field(
        8, ge=0, le=32, description="images: perceptual-hash (pHash) bits of 64 that may differ between near-duplicates"
    )
    image_similarity: float = Field(
        0.99,
        ge=0,
        le=1,
        description="images: and the correlation their 32x32 grey thumbnails must reach (0: the hash alone decides)",
    )


def normalize_text(text: str) -> str:
    import ftfy

    text = ftfy.fix_text(text, normalization="NFC")
    text = _BREAK.sub(" ", text)
    if "<" in text:
        text = _TAG.sub(" ", text)
    if "&" in text:
        text = html.unescape(text)
    return _SPACE.sub(" ", text).strip()


def fold(text: str) -> str:
    """The form duplicates are compared in: lower case, no punctuation or accents, single spaces."""
    text = unicodedata.normalize("NFKD", text.lower())
    text = "".join(c for c in text if not unicodedata.combining(c))
    return _SPACE.sub(" ", _NOT_WORD.sub(" ", text)).strip()


def exact_key(text: str) -> str:
    return hashlib.blake2b(fold(text).encode(), digest_size=16).hexdigest()


def garbled(text: str) -> bool:
    """Text ftfy would change (mojibake, bad Unicode) or holding U+FFFD replacement characters."""
    import ftfy

    return "\ufffd" in text or ftfy.fix_text(text, normalization="NFC") != unicodedata.normalize("NFC", text)


def has_html(text: str) -> bool:
    return bool(_BREAK.search(text) or _TAG.search(text))


def detect_language(text: str) -> str:
    from py3langid.langid import classify

    return classify(text[:2000])[0]


class NearDuplicates:
    """MinHash LSH index over word shingles of folded text (datasketch)."""

    def __init__(self, threshold: float, num_perm: int = 128, shingle: int = 2):
        from datasketch import MinHashLSH

        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
        self.num_perm, self.shingle, self.threshold = num_perm, shingle, threshold
        self.sketches: dict[str, object] = {}

    def sketch(self, text: str):
        from datasketch import MinHash

        words = fold(text).split()
        n = self.shingle
        grams = {" ".join(words[i : i + n]) for i in range(max(1, len(words) - n + 1))} or {""}
        m = MinHash(num_perm=self.num_perm)
        m.update_batch([g.encode() for g in grams])
        return m

    def match(self, sketch) -> str | None:
        """Key of an indexed row at or above the threshold (verified on the sketches), if any."""
        best, best_j = None, self.threshold
        for key in self.lsh.query(sketch):
            j = sketch.jaccard(self.sketches[key])
            if j >= best_j:
                best, best_j = key, j
        return best

    def add(self, key: str, sketch) -> None:
        self.lsh.insert(key, sketch)
        self.sketches[key] = sketch


@dataclass
class Verdicts:
    """The scan's result for one split: per row, the cleaned text (or None) and why it was removed."""

    texts: list[str | None]
    reasons: list[str | None]
    details: list[str | None]
    language: list[str | None] = field(default_factory=list)

    @property
    def kept(self) -> np.ndarray:
        return np.array([r is None for r in self.reasons], dtype=bool)


def scan_split(
    split: str,
    texts: list,
    s: CleanSettings,
    seen: dict[str, str],
    near: NearDuplicates | None,
    train_keys: dict[str, str] | None,
    train_near: NearDuplicates | None,
    progress=None,
    offset: int = 0,
) -> Verdicts:
    """Verdicts for one split. `seen`/`near` index this split's kept rows as it goes; `train_keys`
    and `train_near` (for validation/test) hold the train split's, for leakage. Rows are named by
    their 1-based number in the split, `offset` rows before the first of `texts`."""
    out = Verdicts([], [], [], [])
    for i, raw in enumerate(texts):
        text = "" if raw is None else str(raw)
        text = normalize_text(text) if s.normalize else text.strip()
        reason, detail, lang = None, None, None
        n_words = len(text.split())
        if not text:
            reason = "empty"
        elif n_words < s.min_words:
            reason, detail = "too_short", f"{n_words} words < {s.min_words}"
        elif s.max_words and n_words > s.max_words:
            reason, detail = "too_long", f"{n_words} words > {s.max_words}"
        if reason is None and s.languages and n_words >= s.language_min_words:
            lang = detect_language(text)
            if lang not in s.languages:
                reason, detail = "language", lang
        key = exact_key(text) if reason is None else None
        if reason is None and train_keys is not None and s.leakage and key in train_keys:
            reason, detail = "leak", f"same text as train {train_keys[key]}"
        if reason is None and s.dedup and key in seen:
            reason, detail = "duplicate", f"same text as {seen[key]}"
        sketch = None
        if reason is None and (near is not None or train_near is not None):
            sketch = (near or train_near).sketch(text)
            if train_near is not None and s.leakage:
                hit = train_near.match(sketch)
                if hit is not None:
                    reason, detail = "leak", f"near-duplicate of train {hit}"
            if reason is None and near is not None:
                hit = near.match(sketch)
                if hit is not None:
                    reason, detail = "near_duplicate", f"near-duplicate of {hit}"
        if reason is None:
            where = f"{split} row {offset + i + 1}"
            seen.setdefault(key, where)
            if near is not None:
                near.add(where, sketch)
        out.texts.append(text if reason is None else None)
        out.reasons.append(reason)
        out.details.append(detail)
        out.language.append(lang)
        if progress is not None:
            progress(1)
    return out


class CleanConfig(StageConfig):
    """`fmloop data clean` as a pipeline stage: the data, its columns and the filters."""

    stage: ClassVar[str] = "clean"
    data: str = Field(description="a file, a folder of split files, a save_to_disk folder or a hub id")
    text_column: str | None = Field(None, description="the text column (images: the image column)")
    label_column: str | None = None
    normalize_labels: bool = Field(False, description="strip and lower-case string labels")
    filters: CleanSettings = Field(default_factory=lambda: CleanSettings())
