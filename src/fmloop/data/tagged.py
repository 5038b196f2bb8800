"""Tagged text for token classification (named entities and other per-word tags) -> validated
splits of sentences: their words and one tag per word.

Accepted inputs (each optionally gzipped):
  file.conll / .bio / .iob / .txt   CoNLL style: one word per line, its tag in the last column
                                    (whitespace- or tab-separated), a blank line between sentences,
                                    `-DOCSTART-` lines skipped
  file.jsonl                        one sentence per line: {"tokens": [...], "tags": [...]}
  folder/ with train.* (+ validation.* / dev.* / test.*) files of either kind: those are the splits

Tags are IOB2 / BIOES: `O`, or `B-TYPE` / `I-TYPE` (`E-`, `S-` too). Bad rows are errors that name
the file and line: a word without a tag, a tag of another scheme, a sentence of words and tags of
different lengths, a test tag the training data never uses. Nothing is dropped silently.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmloop.core.artifacts import fingerprint_paths
from fmloop.core.errors import DataError
from fmloop.data.sampling import SPLIT_NAMES
from fmloop.tasks import get_task

CONLL_SUFFIXES = (".conll", ".bio", ".iob", ".iob2", ".txt")
JSON_SUFFIXES = (".jsonl",)
_TAG = re.compile(r"^(O|[BIES]-\S+)$")


@dataclass
class TaggedSplit:
    words: list[list[str]]
    tags: list[list[str]] | None  # None: unlabeled (prediction)

    def __len__(self) -> int:
        return len(self.words)

    def select(self, indices) -> "TaggedSplit":
        return TaggedSplit(
            [self.words[i] for i in indices], None if self.tags is None else [self.tags[i] for i in indices]
        )


@dataclass
class TaggedData:
    splits: dict[str, TaggedSplit]
    labels: list[str]  # tag names in id order: O first, then per type B-, I-, E-, S-
    fingerprint: str
    description: str
    origin: dict[str, str] = field(default_factory=dict)


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def is_tagged_source(path: str | Path) -> bool:
    """A CoNLL file, a JSONL file of tokens and tags, or a folder whose split files are either."""
    source = Path(str(path)).expanduser()
    if source.is_dir():
        files = [p for p in source.iterdir() if p.is_file() and SPLIT_NAMES.get(p.name.split(".")[0].lower())]
        return bool(files) and all(_is_tagged_file(p) for p in files)
    return source.is_file() and _is_tagged_file(source)


def _is_tagged_file(path: Path) -> bool:
    suffix = _suffix(path)
    if suffix in (".conll", ".bio", ".iob", ".iob2"):
        return True
    if suffix == ".jsonl":
        first = next((line for line in _lines(path) if line.strip()), "")
        try:
            row = json.loads(first)
        except ValueError:
            return False
        return isinstance(row, dict) and "tokens" in row
    return False


def _lines(path: Path):
    opener = gzip.open if path.suffix.lower() == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            yield from fh
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start}). Re-save it as UTF-8.") from None


def read_conll(path: Path, need_tags: bool = True) -> TaggedSplit:
    words, tags, sent_words, sent_tags = [], [], [], []
    for number, line in enumerate(_lines(path), start=1):
        columns = line.split()
        if not columns:
            if sent_words:
                words.append(sent_words)
                tags.append(sent_tags)
                sent_words, sent_tags = [], []
            continue
        if columns[0] == "-DOCSTART-":
            continue
        if len(columns) < 2 and need_tags:
            raise DataError(
                f"{path}, line {number}: the word {columns[0]!r} has no tag. CoNLL files hold a word and its tag "
                "per line (tab- or space-separated), a blank line between sentences."
            )
        tag = columns[-1] if len(columns) >= 2 else "O"
        if need_tags:
            _check_tag(tag, path, number)
        sent_words.append(columns[0])
        sent_tags.append(tag)
    if sent_words:
        words.append(sent_words)
        tags.append(sent_tags)
    return TaggedSplit(words, tags if need_tags else None)


def read_jsonl(path: Path, need_tags: bool = True) -> TaggedSplit:
    words, tags = [], []
    for number, line in enumerate(_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as err:
            raise DataError(f"{path}, line {number}: not JSON ({err}).") from None
        tokens = row.get("tokens") if isinstance(row, dict) else None
        if not isinstance(tokens, list) or not tokens or not all(isinstance(t, str) and t for t in tokens):
            raise DataError(f'{path}, line {number}: "tokens" must be a non-empty list of non-empty strings.')
        words.append(tokens)
        if not need_tags:
            continue
        row_tags = row.get("tags")
        if not isinstance(row_tags, list) or not all(isinstance(t, str) for t in row_tags):
            raise DataError(
                f'{path}, line {number}: "tags" must be a list of tag names such as "O", "B-PER" (one per token).'
            )
        if len(row_tags) != len(tokens):
            raise DataError(
                f"{path}, line {number}: {len(tokens)} tokens but {len(row_tags)} tags; give one per token."
            )
        for tag in row_tags:
            _check_tag(tag, path, number)
        tags.append(row_tags)
    return TaggedSplit(words, tags if need_tags else None)


def _check_tag(tag: str, path: Path, number: int) -> None:
    if not _TAG.match(tag):
        raise DataError(
            f"{path}, line {number}: tag {tag!r} is not IOB2/BIOES. Use O, or B-TYPE / I-TYPE (E-, S- too), "
            "one tag per word."
        )


def read_tagged_file(path: Path, need_tags: bool = True) -> TaggedSplit:
    split = (read_jsonl if _suffix(path) in JSON_SUFFIXES else read_conll)(path, need_tags)
    if not split.words:
        raise DataError(f"{path} holds no sentences.")
    return split


def tag_order(tags: set[str]) -> list[str]:
    """O first, then per entity type (sorted) its B-, I-, E-, S- tags: a stable id order."""
    prefix_rank = {"B": 0, "I": 1, "E": 2, "S": 3}
    named = sorted((t for t in tags if t != "O"), key=lambda t: (t[2:], prefix_rank[t[0]]))
    return ["O", *named]


def read_tagged(
    path: str,
    *,
    labels: list[str] | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    hold_out: bool = True,
    need_tags: bool = True,
) -> TaggedData:
    """Read and validate tagged sentences. `labels` fixes the tag set (a trained model's);
    otherwise the training split's tags are the set. `hold_out=False` never carves a validation
    split from train (evaluation and prediction read every row)."""
    source = Path(path).expanduser()
    if source.is_dir():
        named = {SPLIT_NAMES.get(p.name.split(".")[0].lower()): p for p in sorted(source.iterdir()) if p.is_file()}
        named.pop(None, None)
        if not named:
            raise DataError(f"{source}: no train / validation / test files in it (e.g. train.conll, dev.conll).")
        files = named
    elif source.is_file():
        files = {"train": source}
    else:
        raise DataError(f"{path} does not exist. Pass a CoNLL or JSONL file, or a folder of split files.")
    splits = {name: read_tagged_file(f, need_tags) for name, f in files.items()}
    origin = {name: str(f) for name, f in files.items()}
    description = (
        f"tagged sentences in {source} ({', '.join(f'{n} {len(s)}' for n, s in sorted(splits.items()))})"
        if source.is_dir()
        else f"tagged sentences in {source} ({len(splits['train'])})"
    )
    if need_tags:
        if labels is None:
            if "train" not in splits:
                raise DataError(f"{source}: no train file to read the tag set from.")
            labels = tag_order({t for sent in splits["train"].tags for t in sent} | {"O"})
        known = set(labels)
        for name, split in splits.items():
            for i, sent in enumerate(split.tags):
                unknown = next((t for t in sent if t not in known), None)
                if unknown is not None:
                    raise DataError(
                        f"{origin[name]}, sentence {i + 1}: tag {unknown!r} is not in the tag set "
                        f"({', '.join(labels)}); the training data must use every tag the other splits do."
                    )
    if hold_out and need_tags and "validation" not in splits and "train" in splits:
        order = np.random.default_rng(seed).permutation(len(splits["train"]))
        n = max(1, int(round(len(order) * validation_fraction)))
        splits["validation"] = splits["train"].select(np.sort(order[:n]))
        splits["train"] = splits["train"].select(np.sort(order[n:]))
        description += f"; held out {n} sentences for validation (seeded)"
    return TaggedData(splits, labels or ["O"], fingerprint_paths(list(files.values())), description, origin)


def tag_ids(tags: list[list[str]], labels: list[str]) -> np.ndarray:
    """(N, longest sentence) int64 tag ids, IGNORE past each sentence's end."""
    index = {t: i for i, t in enumerate(labels)}
    return get_task("tokens").stack([[index[t] for t in sent] for sent in tags], labels)
