"""Text sources -> `datasets.DatasetDict` with a `train` and a `validation` split and one `text` column.

Accepted inputs:
  file.txt                a document per non-empty line
  folder/ of *.txt        a document per file
  file.csv / file.tsv     with a text column (`--data.column`)
  file.jsonl[.gz], .json  likewise
  file.parquet            likewise
  folder/ with train.* (+ validation.* / test.*) files: those are the splits
  folder/ from `Dataset.save_to_disk` / `DatasetDict.save_to_disk`
  owner/name              a Hugging Face hub dataset id (needs network access)

When no held-out split is given, one is carved out of train (seeded).
"""

from __future__ import annotations

import codecs
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import datasets
from datasets import Dataset, DatasetDict

from fmloop.core.artifacts import fingerprint_paths
from fmloop.core.errors import DataError
from fmloop.data.sampling import SPLIT_NAMES

log = logging.getLogger(__name__)

TABULAR = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
TEXT_EXT = ".txt"


@dataclass
class TextCorpus:
    splits: DatasetDict  # "train" and "validation", each with a single "text" column
    fingerprint: str  # content hash of the inputs (or the hub dataset's fingerprint)
    description: str  # what was loaded, for logs and the manifest


def _suffix(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"] and len(suffixes) >= 2:
        return suffixes[-2]
    return suffixes[-1] if suffixes else ""


def _looks_like_hub_id(text: str) -> bool:
    return not text.startswith((".", "/", "~")) and text.count("/") <= 1 and not Path(text).suffix and " " not in text


def _find_bad_utf8_line(path: Path) -> int | None:
    """1-based line number of the first line that is not valid UTF-8 (None if all decode)."""
    import gzip

    opener = gzip.open if path.suffix == ".gz" else open
    decoder = codecs.getincrementaldecoder("utf-8")()
    lines_before = 0
    with opener(path, "rb") as fh:  # streamed: files may be larger than memory
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            try:
                decoder.decode(chunk)
            except UnicodeDecodeError as err:
                # err.start counts from the decoder's buffered tail (at most 3 bytes, never a newline).
                return lines_before + chunk.count(b"\n", 0, max(0, err.start - len(err.object) + len(chunk))) + 1
            lines_before += chunk.count(b"\n")
    try:
        decoder.decode(b"", final=True)
    except UnicodeDecodeError:
        return lines_before + 1
    return None


def _find_ragged_line(path: Path, delimiter: str) -> tuple[int, int, int] | None:
    """(line number, header fields, fields found) of the first row whose field count differs."""
    import csv

    with open(path, newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh, delimiter=delimiter)
        header = next(reader, None)
        if header is None:
            return None
        for row in reader:
            if row and len(row) != len(header):
                return reader.line_num, len(header), len(row)
    return None


def _check_readable(path: Path) -> None:
    if not os.access(path, os.R_OK):
        raise DataError(f"Cannot read {path}: permission denied.")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path} is empty.")


def _load_file(path: Path) -> Dataset:
    """One file -> Dataset, with errors that name the file (and line, for bad bytes)."""
    _check_readable(path)
    ext = _suffix(path)
    if ext != ".parquet":
        # pyarrow's JSON reader accepts invalid UTF-8 and fails much later; check up front.
        bad_line = _find_bad_utf8_line(path)
        if bad_line is not None:
            raise DataError(
                f"{path}, line {bad_line}: bytes that are not valid UTF-8. "
                f"Re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)."
            )
    try:
        if ext == TEXT_EXT:
            ds = datasets.load_dataset("text", data_files=str(path), split="train")
        elif ext in TABULAR:
            kwargs = {"delimiter": "\t"} if ext == ".tsv" else {}
            ds = datasets.load_dataset(TABULAR[ext], data_files=str(path), split="train", **kwargs)
        else:
            raise DataError(
                f"{path}: unsupported file type {ext or '(none)'!r}. Use .txt, .csv, .tsv, .jsonl, "
                f".jsonl.gz, .json or .parquet, a folder of them, or a save_to_disk folder."
            )
    except DataError:
        raise
    except Exception as err:  # datasets wraps parser errors in many types
        if ext in (".csv", ".tsv"):
            ragged = _find_ragged_line(path, "\t" if ext == ".tsv" else ",")
            if ragged:
                line, expected, got = ragged
                raise DataError(
                    f"{path}, line {line}: {got} fields where the header has {expected}. Quote fields "
                    f"that contain the delimiter, or fix the row."
                ) from None
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DataError(f"Could not read {path}: {reason}") from None
    return ds


def _pick_column(ds: Dataset, column: str | None, where: str) -> Dataset:
    names = ds.column_names
    if column is None:
        if "text" in names:
            column = "text"
        else:
            string_cols = [n for n, f in ds.features.items() if getattr(f, "dtype", None) in ("string", "large_string")]
            if len(string_cols) != 1:
                raise DataError(
                    f"{where}: cannot tell which column holds the text; columns are {', '.join(names)}. "
                    f"Pass --data.column=NAME."
                )
            column = string_cols[0]
    if column not in names:
        raise DataError(f"{where}: no column {column!r}. Columns are: {', '.join(names)}. Pass --data.column=NAME.")
    ds = ds.select_columns([column])
    if column != "text":
        ds = ds.rename_column(column, "text")
    return ds


def _drop_empty(ds: Dataset) -> Dataset:
    return ds.filter(
        lambda batch: [bool(t and t.strip()) for t in batch["text"]],
        batched=True,
        desc="dropping empty documents" if len(ds) > 100_000 else None,
    )


def _folder_of_text_files(folder: Path, files: list[Path]) -> Dataset:
    docs = []
    for f in files:
        _check_readable(f)
        try:
            docs.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError:
            raise DataError(
                f"{f}, line {_find_bad_utf8_line(f)}: bytes that are not valid UTF-8. Re-encode the file as UTF-8."
            ) from None
    return Dataset.from_dict({"text": docs})


@dataclass
class RawSplits:
    splits: dict[str, Dataset]  # split name -> dataset with the source's own columns
    origin: dict[str, str]  # split name -> file (or source) it came from, for error messages
    fingerprint: str
    description: str


def read_splits(path: str, prepare=None) -> RawSplits:
    """Read a file, folder, save_to_disk folder or hub id into named splits, columns untouched.

    `prepare(dataset, where)` is applied to each file of a mixed folder before the files are
    concatenated (they must agree on columns by then).
    """
    splits: dict[str, Dataset] = {}
    origin: dict[str, str] = {}
    source = Path(path).expanduser()
    if source.is_dir():
        if (
            (source / "dataset_dict.json").exists()
            or (source / "dataset_info.json").exists()
            or (source / "state.json").exists()
        ):
            loaded = datasets.load_from_disk(str(source))
            splits = dict(loaded) if isinstance(loaded, DatasetDict) else {"train": loaded}
            origin = {name: f"{source} [{name}]" for name in splits}
            return RawSplits(
                splits, origin, "-".join(d._fingerprint for d in splits.values())[:32], f"save_to_disk folder {source}"
            )
        files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise DataError(f"{source} is an empty folder: put .txt/.csv/.jsonl/.parquet files in it.")
        named = {SPLIT_NAMES.get(p.name.split(".")[0].lower()): p for p in files}
        # Other files beside the split files (a README, a removals log) are not data.
        if "train" in named and all(_suffix(p) in TABULAR or _suffix(p) == TEXT_EXT for n, p in named.items() if n):
            hashed = []
            for split, f in named.items():
                if split:
                    splits[split], origin[split] = _load_file(f), str(f)
                    hashed.append(f)
            return RawSplits(
                splits, origin, fingerprint_paths(hashed), f"split files in {source} ({', '.join(sorted(splits))})"
            )
        if all(_suffix(p) == TEXT_EXT for p in files):
            return RawSplits(
                {"train": _folder_of_text_files(source, files)},
                {"train": str(source)},
                fingerprint_paths(files),
                f"{len(files)} text files in {source} (a document per file)",
            )
        parts = [_load_file(f) for f in files]
        if prepare is not None:
            parts = [prepare(d, str(f)) for d, f in zip(parts, files)]
        return RawSplits(
            {"train": datasets.concatenate_datasets(parts)},
            {"train": str(source)},
            fingerprint_paths(files),
            f"{len(files)} files in {source}",
        )
    if source.is_file():
        return RawSplits(
            {"train": _load_file(source)}, {"train": str(source)}, fingerprint_paths([source]), f"file {source}"
        )
    if _looks_like_hub_id(path):
        try:
            loaded = datasets.load_dataset(path)
        except Exception as err:
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise DataError(
                f"{path!r} is not a local file or folder, and loading it from the Hugging Face hub failed "
                f"({reason}). Check the path, or the network if you meant a hub dataset id."
            ) from None
        splits = dict(loaded)
        return RawSplits(
            splits,
            {name: f"{path} [{name}]" for name in splits},
            "-".join(d._fingerprint for d in splits.values())[:32],
            f"hub dataset {path}",
        )
    raise DataError(f"{path} does not exist. Pass a file, a folder, or a Hugging Face hub dataset id.")


def load_text_corpus(
    path: str,
    *,
    column: str | None = None,
    validation_path: str | None = None,
    validation_fraction: float = 0.05,
    max_validation_docs: int = 2000,
    max_docs: int | None = None,
    seed: int = 0,
) -> TextCorpus:
    """Load a text corpus from a file, folder or hub id into train/validation splits."""
    raw = read_splits(path, prepare=lambda ds, where: _pick_column(ds, column, where))
    splits, fingerprint, description = raw.splits, raw.fingerprint, raw.description
    if "train" not in splits:
        raise DataError(f"{path} has no 'train' split (found: {', '.join(splits)}).")
    splits = {name: _drop_empty(_pick_column(ds, column, raw.origin[name])) for name, ds in splits.items()}

    if validation_path:
        held = load_text_corpus(validation_path, column=column, validation_fraction=validation_fraction, seed=seed)
        splits["validation"] = datasets.concatenate_datasets([held.splits["train"], held.splits["validation"]])
        fingerprint = f"{fingerprint}+{held.fingerprint}"
    elif "validation" not in splits and "test" in splits:
        splits["validation"] = splits["test"]

    train = splits["train"]
    if len(train) == 0:
        raise DataError(f"{path} has no non-empty documents.")
    if "validation" not in splits or len(splits["validation"]) == 0:
        if len(train) < 2:
            raise DataError(f"{path} has only {len(train)} document: need at least 2 to hold one out for evaluation.")
        n_val = max(1, min(int(round(len(train) * validation_fraction)), max_validation_docs))
        parts = train.train_test_split(test_size=n_val, seed=seed, shuffle=True)
        train, splits["validation"] = parts["train"], parts["test"]
        description += f"; held out {n_val} documents for evaluation"
    if max_docs is not None and len(train) > max_docs:
        train = train.shuffle(seed=seed).select(range(max_docs))
    validation = splits["validation"]
    if len(validation) > max_validation_docs:
        validation = validation.shuffle(seed=seed).select(range(max_validation_docs))
    return TextCorpus(DatasetDict(train=train, validation=validation), fingerprint, description)
