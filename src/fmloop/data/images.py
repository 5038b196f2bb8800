"""Image sources -> decoded uint8 arrays, split and labeled.

Accepted inputs:
  file.parquet / .arrow       Hugging Face image datasets: an `image` column (struct of PNG/JPEG
                              bytes and path) and, for labeled data, a `label` column
  folder/ with train.parquet (+ validation/test): those are the splits
  folder/CLASS/*.png          ImageFolder: one sub-folder per class
  folder/train/CLASS/*.png    ImageFolder splits (train, validation/val, test)
  folder/*.png                unlabeled images (pretraining, prediction); nested folders too
  file.csv / .jsonl           a column of image paths (relative to the file) and a label column

Every image is decoded once and kept as one uint8 array (N, H, W, C): later epochs index into it
and pay nothing for decoding. The array is also cached on disk (keyed by the content fingerprint),
so a second run on the same data skips decoding too. Files that cannot be decoded are skipped
and listed; more than `max_bad_fraction` of them is an error. Grey, palette, RGBA and CMYK images
are converted (to RGB when any image has colour, else to grey); images of other sizes are resized
to the most common size.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fmloop.core.artifacts import fingerprint_paths
from fmloop.core.errors import DataError
from fmloop.data.sampling import SPLIT_NAMES, per_class_sample, stratified_holdout

log = logging.getLogger(__name__)

IMAGE_EXT = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
TABLE_EXT = {".parquet", ".arrow"}
LIST_EXT = {".csv", ".tsv", ".jsonl", ".json"}
IMAGE_COLUMNS = ("image", "img", "pixel_values", "path", "file", "filename", "filepath", "image_path")
LABEL_COLUMNS = ("label", "labels", "class", "target", "y", "fine_label")


@dataclass
class ImageSplit:
    pixels: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray | None  # int64 class ids, or None (unlabeled)
    names: list[str]  # where each image came from, for reports and errors

    def __len__(self) -> int:
        return len(self.pixels)

    def subset(self, index: np.ndarray) -> ImageSplit:
        return ImageSplit(
            self.pixels[index], None if self.labels is None else self.labels[index], [self.names[i] for i in index]
        )


@dataclass
class ImageData:
    splits: dict[str, ImageSplit]
    labels: list[str] | None  # class names in id order
    fingerprint: str
    description: str
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file or row, reason)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(next(iter(self.splits.values())).pixels.shape[1:])  # (H, W, C)


# Detection ---------------------------------------------------------------------------------------


def _has_images(folder: Path, depth: int = 2) -> bool:
    for root, dirs, files in os.walk(folder):
        if any(Path(f).suffix.lower() in IMAGE_EXT for f in files):
            return True
        if Path(root).relative_to(folder).parts.__len__() >= depth:
            dirs[:] = []
    return False


def _table_has_image_column(path: Path) -> bool:
    if path.suffix.lower() != ".parquet":
        return path.suffix.lower() == ".arrow"
    import pyarrow.parquet as pq

    schema = pq.read_schema(path)
    return any(_is_image_field(schema.field(name)) for name in schema.names)


def _is_image_field(arrow_field) -> bool:
    import pyarrow as pa

    t = arrow_field.type
    return (pa.types.is_struct(t) and {"bytes", "path"} <= {t.field(i).name for i in range(t.num_fields)}) or (
        arrow_field.name in ("image", "img") and pa.types.is_binary(t)
    )


def is_image_source(path: str | None) -> bool:
    """True when `path` holds images (so a stage should take its image branch)."""
    if not path:
        return False
    p = Path(path).expanduser()
    if p.is_file():
        if p.suffix.lower() in TABLE_EXT:
            return _table_has_image_column(p)
        if p.suffix.lower() in LIST_EXT:
            return _list_file_image_column(p) is not None
        return p.suffix.lower() in IMAGE_EXT
    if p.is_dir():
        tables = [f for f in p.iterdir() if f.suffix.lower() in TABLE_EXT]
        if tables:
            return _table_has_image_column(tables[0])
        return _has_images(p)
    return False


def _list_file_image_column(path: Path) -> str | None:
    try:
        rows = _read_list_file(path, limit=5)
    except (DataError, UnicodeDecodeError):
        return None  # detection only: the text reader names the bad line precisely

    for column in IMAGE_COLUMNS:
        if rows and column in rows[0] and all(Path(str(r.get(column, ""))).suffix.lower() in IMAGE_EXT for r in rows):
            return column
    return None


def _read_list_file(path: Path, limit: int | None = None) -> list[dict]:
    if path.suffix.lower() in (".jsonl", ".json"):
        rows = []
        with path.open(encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                if limit is not None and len(rows) >= limit:
                    break
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as err:
                        raise DataError(f"{path}, line {i + 1}: not valid JSON ({err.msg}).") from None
        return rows
    import csv

    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
        rows = []
        for row in reader:
            if limit is not None and len(rows) >= limit:
                break
            if None in row:
                raise DataError(f"{path}, line {reader.line_num}: more fields than the header has. Fix the row.")
            rows.append(row)
        return rows


# Raw items: (name, bytes-or-path, label) ------------------------------------------------------------


@dataclass
class _RawSplit:
    items: list[tuple[str, object]]  # (name, bytes | Path)
    labels: list | None
    label_names: list[str] | None  # from a ClassLabel feature or folder names
    origin: str


def _read_table(path: Path, image_column: str | None, label_column: str | None) -> _RawSplit:
    import pyarrow.parquet as pq

    table = pq.read_table(path) if path.suffix.lower() == ".parquet" else read_arrow(path)
    names = table.schema.names
    icol = image_column or next((n for n in names if _is_image_field(table.schema.field(n))), None)
    if icol is None or icol not in names:
        raise DataError(
            f"{path}: no image column{f' {image_column!r}' if image_column else ''}. Columns are: "
            f"{', '.join(names)}. Pass --data.image_column=NAME."
        )
    lcol = label_column or next((n for n in LABEL_COLUMNS if n in names), None)
    if label_column and label_column not in names:
        raise DataError(f"{path}: no label column {label_column!r}. Columns are: {', '.join(names)}.")
    column = table.column(icol).to_pylist()
    items = []
    for i, value in enumerate(column):
        data = value.get("bytes") if isinstance(value, dict) else value
        if data is None and isinstance(value, dict) and value.get("path"):
            data = path.parent / value["path"]
        items.append((f"{path.name} row {i + 1}", data))
    label_names = None
    meta = (table.schema.metadata or {}).get(b"huggingface")
    if meta and lcol:
        feature = json.loads(meta).get("info", {}).get("features", {}).get(lcol, {})
        if feature.get("_type") == "ClassLabel":
            label_names = list(feature["names"])
    labels = table.column(lcol).to_pylist() if lcol else None
    return _RawSplit(items, labels, label_names, str(path))


def read_arrow(path: Path):
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            return pa.ipc.open_file(source).read_all()


def _read_list(path: Path, image_column: str | None, label_column: str | None) -> _RawSplit:
    rows = _read_list_file(path)
    if not rows:
        raise DataError(f"{path}: no rows.")
    icol = image_column or _list_file_image_column(path)
    if icol is None or icol not in rows[0]:
        raise DataError(
            f"{path}: cannot tell which column holds image paths; columns are "
            f"{', '.join(rows[0])}. Pass --data.image_column=NAME."
        )
    lcol = label_column or next((n for n in LABEL_COLUMNS if n in rows[0]), None)
    items, missing = [], []
    for i, row in enumerate(rows):
        file = (path.parent / str(row[icol])).expanduser()
        if not file.exists():
            missing.append(f"row {i + 1}: {row[icol]}")
        items.append((str(row[icol]), file))
    if missing:
        raise DataError(
            f"{path}: {len(missing)} image file(s) do not exist ({'; '.join(missing[:3])}"
            f"{' ...' if len(missing) > 3 else ''}). Paths are relative to {path.parent}."
        )
    labels = [row.get(lcol) for row in rows] if lcol else None
    return _RawSplit(items, labels, None, str(path))


def _images_under(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file()
        and p.suffix.lower() in IMAGE_EXT
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def _read_folder(folder: Path) -> _RawSplit:
    classes = sorted(
        d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith(".") and _has_images(d, 8)
    )
    loose = [p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXT]
    if classes and not loose:
        items, labels = [], []
        for name in classes:
            for file in _images_under(folder / name):
                items.append((str(file.relative_to(folder)), file))
                labels.append(name)
        return _RawSplit(items, labels, classes, str(folder))
    files = _images_under(folder)
    return _RawSplit([(str(f.relative_to(folder)), f) for f in files], None, None, str(folder))


def raw_splits(path: Path, image_column: str | None, label_column: str | None) -> dict[str, _RawSplit]:
    if not path.exists():
        raise DataError(f"{path} does not exist.")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix in TABLE_EXT:
            return {"train": _read_table(path, image_column, label_column)}
        if suffix in LIST_EXT:
            return {"train": _read_list(path, image_column, label_column)}
        raise DataError(
            f"{path}: unsupported image source (use a parquet/arrow file, a CSV/JSONL of image paths or a folder)."
        )
    split_files = {
        SPLIT_NAMES[f.stem.lower()]: f
        for f in sorted(path.iterdir())
        if f.suffix.lower() in TABLE_EXT | LIST_EXT and f.stem.lower() in SPLIT_NAMES
    }
    if split_files:
        return {
            split: (
                _read_table(f, image_column, label_column)
                if f.suffix.lower() in TABLE_EXT
                else _read_list(f, image_column, label_column)
            )
            for split, f in split_files.items()
        }
    split_dirs = {
        SPLIT_NAMES[d.name.lower()]: d for d in sorted(path.iterdir()) if d.is_dir() and d.name.lower() in SPLIT_NAMES
    }
    if "train" in split_dirs or "test" in split_dirs:
        return {split: _read_folder(d) for split, d in split_dirs.items()}
    return {"train": _read_folder(path)}


# Decoding ---------------------------------------------------------------------------------------


def _decode(data):
    from PIL import Image

    if isinstance(data, Image.Image):
        image = data
    else:
        image = Image.open(io.BytesIO(data) if isinstance(data, (bytes, bytearray)) else data)
    image.load()  # force decoding now: a truncated file fails here, not in the middle of an epoch
    if image.mode in ("1", "L", "I", "I;16", "F", "LA"):
        return image.convert("L")
    if image.mode == "RGBA" or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))  # transparent areas become white, not black
        return background
    return image.convert("RGB")


def decode_images(
    items: list[tuple[str, object]],
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    progress: bool = True,
):
    """(uint8 array (N, H, W, C), kept item indices, skipped [(name, reason)])."""
    from PIL import Image

    decoded, kept, skipped = [], [], []
    iterator: Iterable = enumerate(items)
    if progress and len(items) > 5000:
        from rich.progress import track

        iterator = track(iterator, total=len(items), description="decoding images", transient=True)
    for i, (name, data) in iterator:
        if data is None:
            skipped.append((name, "no image data"))
            continue
        try:
            decoded.append(_decode(data))
            kept.append(i)
        except Exception as err:  # PIL raises many types for bad files; every one means "skip this file"
            skipped.append((name, f"{type(err).__name__}: {err}"[:200]))
    if not decoded:
        return np.zeros((0, 1, 1, 1), np.uint8), kept, skipped
    if channels is None:
        channels = 3 if any(im.mode == "RGB" for im in decoded) else 1
    if size is None:
        size = Counter(im.size for im in decoded).most_common(1)[0][0]  # (W, H)
    mode = "RGB" if channels == 3 else "L"
    out = np.empty((len(decoded), size[1], size[0], channels), np.uint8)
    for j, im in enumerate(decoded):
        if im.mode != mode:
            im = im.convert(mode)
        if im.size != tuple(size):
            im = im.resize(tuple(size), Image.BILINEAR)
        arr = np.asarray(im)
        out[j] = arr[..., None] if arr.ndim == 2 else arr
    return out, kept, skipped


# Labels, splits, cache -------------------------------------------------------------------------------


def _label_list(raw: dict[str, _RawSplit], given: list[str] | None) -> list[str] | None:
    if given is not None:
        return list(given)
    train = raw.get("train") or next(iter(raw.values()))
    if train.labels is None:
        return None
    if train.label_names:
        return list(train.label_names)
    values = {str(v).strip() for v in train.labels if v is not None and str(v).strip()}
    if all(v.lstrip("-").isdigit() for v in values):
        return sorted(values, key=int)
    return sorted(values)


def _encode_labels(split: _RawSplit, names: list[str], split_name: str) -> np.ndarray:
    index = {n: i for i, n in enumerate(names)}
    out = np.empty(len(split.labels), np.int64)
    for i, value in enumerate(split.labels):
        if split.label_names and isinstance(value, int) and not isinstance(value, bool):
            value = split.label_names[value] if 0 <= value < len(split.label_names) else value
        key = "" if value is None else str(value).strip()
        if key not in index:
            where = f"{split.origin}, {split.items[i][0]}"
            if not key:
                raise DataError(f"{where}: missing label. Fill it in or remove the row.")
            raise DataError(
                f"{where}: label {key!r} does not occur in the training data (labels: "
                f"{', '.join(names[:20])}). Fix the label or add training examples of it."
            )
        out[i] = index[key]
    return out


def _cache_dir() -> Path:
    return Path(os.environ.get("FMLOOP_CACHE", Path.home() / ".cache" / "fmloop")) / "images"


def _cache_load(key: str):
    file = _cache_dir() / f"{key}.npz"
    if not file.exists():
        return None
    try:
        with np.load(file, allow_pickle=False) as z:
            return z["pixels"], z["kept"].tolist(), [tuple(x) for x in z["skipped"].tolist()]
    except Exception:  # a damaged cache entry is only a cache miss
        return None


def _cache_save(key: str, pixels: np.ndarray, kept: list[int], skipped: list[tuple[str, str]]) -> None:
    folder = _cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{key}.{os.getpid()}.npz"
        np.savez(
            tmp, pixels=pixels, kept=np.asarray(kept, np.int64), skipped=np.asarray(skipped, dtype=str).reshape(-1, 2)
        )
        os.replace(tmp, folder / f"{key}.npz")
    except OSError as err:  # a read-only home: run without the cache
        log.debug("image cache not written: %s", err)


def limit_per_class(split: ImageSplit, limit: float, seed: int) -> ImageSplit:
    """A seeded, stratified subset: `limit` examples per class (or that fraction of each class)."""
    if split.labels is None:
        raise DataError("--train.limit_per_class needs labeled training data.")
    return split.subset(per_class_sample(split.labels, limit, seed))


def load_images(
    path: str,
    *,
    labels: list[str] | None = None,
    need_labels: bool = True,
    image_column: str | None = None,
    label_column: str | None = None,
    validation_fraction: float = 0.1,
    seed: int = 0,
    hold_out: bool = True,
    size: tuple[int, int] | None = None,
    channels: int | None = None,
    max_bad_fraction: float = 0.05,
) -> ImageData:
    """Decode an image source into splits. `size` (W, H) and `channels` force a shape (a trained
    model's); otherwise the most common size and RGB-if-any-colour are used."""
    root = Path(path).expanduser()
    raw = raw_splits(root, image_column, label_column)
    for r in raw.values():
        if not r.items:
            raise DataError(f"{r.origin}: no images found (looked for {', '.join(sorted(IMAGE_EXT))}).")
    names = _label_list(raw, labels)
    if need_labels and names is None:
        first = next(iter(raw.values()))
        raise DataError(
            f"{first.origin}: no labels found (no label column, and not a folder with one sub-folder "
            f"per class). Label the images or use them for pretraining."
        )
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    base_fp = fingerprint_paths(files)
    splits, skipped_all = {}, []
    for split_name in sorted(raw, key=lambda s: (s != "train", s)):
        r = raw[split_name]
        key = hashlib.sha256(f"{base_fp}|{split_name}|{size}|{channels}|{image_column}".encode()).hexdigest()[:24]
        cached = _cache_load(key)
        pixels, kept, skipped = cached if cached is not None else decode_images(r.items, size, channels)
        if cached is None and len(kept):
            _cache_save(key, pixels, kept, skipped)
        if skipped:
            skipped_all.extend((f"{r.origin}: {n}", why) for n, why in skipped)
            log.warning("%s: skipped %d unreadable image(s), e.g. %s (%s)", r.origin, len(skipped), *skipped[0])
            if len(skipped) > max_bad_fraction * len(r.items):
                raise DataError(
                    f"{r.origin}: {len(skipped)} of {len(r.items)} images cannot be decoded (more than "
                    f"{max_bad_fraction:.0%}); first: {skipped[0][0]} ({skipped[0][1]}). Fix or remove them."
                )
        if not len(kept):
            raise DataError(f"{r.origin}: none of the {len(r.items)} images could be decoded.")
        if size is None:
            size = (pixels.shape[2], pixels.shape[1])  # every split gets the train split's shape
        if channels is None:
            channels = pixels.shape[3]
        y = None
        if r.labels is not None and names is not None:
            kept_raw = _RawSplit([r.items[i] for i in kept], [r.labels[i] for i in kept], r.label_names, r.origin)
            y = _encode_labels(kept_raw, names, split_name)
        splits[split_name] = ImageSplit(pixels, y, [r.items[i][0] for i in kept])

    if "train" in splits and splits["train"].labels is not None and labels is None:
        present = np.unique(splits["train"].labels)
        if len(present) < 2:
            raise DataError(
                f"{raw['train'].origin}: the labels have one class ({names[present[0]]!r}); "
                f"classification needs at least two."
            )
    desc = f"{root} ({', '.join(f'{k}: {len(v)}' for k, v in splits.items())} images, {size[1]}x{size[0]}x{channels})"
    if skipped_all:
        desc += f"; skipped {len(skipped_all)} unreadable"
    if hold_out and "validation" not in splits and "train" in splits:
        train = splits["train"]
        keep, held = stratified_holdout(train.labels, len(train), validation_fraction, seed)
        splits["train"], splits["validation"] = train.subset(keep), train.subset(held)
        desc += f"; held out {len(held)} for validation (seeded, stratified)"
    return ImageData(splits, names, base_fp, desc, skipped_all)
