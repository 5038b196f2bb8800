"""`fmloop data clean` and `fmloop data inspect`: what is in a dataset, and a cleaner copy of it.

    clean_dataset("imdb/", "imdb-clean/", CleanSettings(languages=["en"]))

reads every split (train first), scans each row once (data/cleaning.py) and streams the kept rows,
text normalised and every other column untouched, into OUT/<split>.parquet batch by batch, so the
dataset never has to fit in memory (the duplicate indexes do: a key per row, a MinHash sketch per
row for near-duplicates). Every removed row goes to OUT/removed.jsonl with its split, row number,
reason and original text; OUT/clean_report.json counts them. The folder is built hidden and moved
into place at the end, and the input is only read. `fmloop finetune --data OUT` reads it directly.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from fmloop.core.artifacts import RunDir, atomic_write_json, atomic_write_text, new_folder, require_new_folder
from fmloop.core.console import err_console
from fmloop.core.errors import ConfigError, DataError
from fmloop.core.html import CSS, figure_to_data_uri, html_table
from fmloop.data.cleaning import (
    CleanConfig,
    CleanSettings,
    NearDuplicates,
    detect_language,
    garbled,
    has_html,
    scan_split,
)
from fmloop.data.image_cleaning import clean_images, inspect_images, pairs_figure
from fmloop.data.images import is_image_source
from fmloop.data.labeled import LABEL_CANDIDATES, TEXT_CANDIDATES, _choose, drop_unlabeled_splits
from fmloop.data.sources import read_splits

log = logging.getLogger(__name__)

BATCH = 4096


def _columns(ds, where: str, text_column: str | None, label_column: str | None) -> tuple[str, str | None]:
    tcol = _choose(ds.column_names, text_column, TEXT_CANDIDATES, "text", where, "--text-column")
    if label_column is not None:
        return tcol, _choose(ds.column_names, label_column, LABEL_CANDIDATES, "label", where, "--label-column")
    return tcol, next((c for c in LABEL_CANDIDATES if c in ds.column_names), None)


def _ordered(splits: dict) -> list[str]:
    return sorted(splits, key=lambda n: (n != "train", n))


def _progress():
    from rich.progress import Progress

    return Progress(console=err_console, transient=True)


def clean_dataset(
    path: str,
    out: str | Path,
    settings: CleanSettings | None = None,
    text_column: str | None = None,
    label_column: str | None = None,
    normalize_labels: bool = False,
) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    s = settings or CleanSettings()
    out = require_new_folder(out)
    if Path(path).resolve() == out.resolve():
        raise ConfigError("--out must differ from the input: fmloop never modifies input files in place.")
    if is_image_source(path):
        with new_folder(out) as tmp:
            report = clean_images(path, tmp, s, text_column, label_column)
            atomic_write_json(tmp / "clean_report.json", report)
        return report
    raw = read_splits(path)
    report = {"source": str(path), "settings": s.model_dump(), "splits": {}}
    # a published test split without labels (the hub's SST-2) is dropped here, as fine-tuning would
    dropped = drop_unlabeled_splits(raw, label_column)
    if dropped:
        report["unlabeled_splits"] = dropped.removeprefix("; ")
    train_keys, train_near = None, None
    with new_folder(out) as tmp:
        with open(tmp / "removed.jsonl", "w") as removed, _progress() as progress:
            for split in _ordered(raw.splits):
                ds, where = raw.splits[split], raw.origin[split]
                tcol, lcol = _columns(ds, where, text_column, label_column)
                seen: dict[str, str] = {}
                near = NearDuplicates(s.near_threshold, s.num_perm, s.shingle) if s.near_dedup else None
                leak_near = train_near if s.leakage and split != "train" else None
                task = progress.add_task(f"cleaning {split}", total=len(ds))
                writer, reasons, row = None, Counter(), 0
                for batch in ds.iter(batch_size=BATCH):
                    verdicts = scan_split(
                        split,
                        batch[tcol],
                        s,
                        seen,
                        near,
                        train_keys if split != "train" else None,
                        leak_near,
                        progress=lambda n: progress.advance(task, n),
                        offset=row,
                    )
                    keep = verdicts.kept
                    for i in np.flatnonzero(~keep):
                        reasons[verdicts.reasons[i]] += 1
                        removed.write(
                            json.dumps(
                                {
                                    "split": split,
                                    "row": row + int(i) + 1,
                                    "reason": verdicts.reasons[i],
                                    "detail": verdicts.details[i],
                                    "text": batch[tcol][i],
                                }
                            )
                            + "\n"
                        )
                    table = pa.Table.from_pydict(batch).filter(pa.array(keep))
                    table = table.set_column(
                        table.column_names.index(tcol),
                        tcol,
                        pa.array([t for t in verdicts.texts if t is not None], pa.string()),
                    )
                    if normalize_labels and lcol is not None and pa.types.is_string(table.schema.field(lcol).type):
                        labels = [None if v is None else str(v).strip().lower() for v in table.column(lcol).to_pylist()]
                        table = table.set_column(table.column_names.index(lcol), lcol, pa.array(labels, pa.string()))
                    if writer is None:
                        writer = pq.ParquetWriter(str(tmp / f"{split}.parquet"), table.schema)
                    writer.write_table(table)
                    row += len(keep)
                if writer is not None:
                    writer.close()
                kept = row - sum(reasons.values())
                report["splits"][split] = {"source": where, "rows": row, "kept": kept, "removed": dict(reasons)}
                log.info("%s: kept %d of %d rows; removed %s", split, kept, row, dict(reasons) or "none")
                if kept == 0:
                    raise DataError(
                        f"Cleaning removed every row of {where}; loosen the settings (removed: {dict(reasons)})."
                    )
                if split == "train":
                    train_keys, train_near = seen, near
        atomic_write_json(tmp / "clean_report.json", report)
    return report


def run(cfg: CleanConfig, out: str | Path) -> RunDir:
    """The clean stage: OUT holds the cleaned splits, removed.jsonl, clean_report.json and a
    manifest (kind "clean") whose metrics count the rows kept and removed."""
    report = clean_dataset(cfg.data, out, cfg.filters, cfg.text_column, cfg.label_column, cfg.normalize_labels)
    run = RunDir(out)
    splits = report.get("splits", {})
    run.write_config(cfg.resolved())
    run.write_manifest(
        kind="clean",
        status="finished",
        metrics={
            "rows": sum(v.get("rows", 0) for v in splits.values()),
            "kept": sum(v.get("kept", 0) for v in splits.values()),
        },
    )
    return run


# Inspection -----------------------------------------------------------------------------------------


def inspect_dataset(
    path: str,
    out: str | Path,
    text_column: str | None = None,
    label_column: str | None = None,
    language_sample: int = 2000,
    near_threshold: float = 0.6,
    image_distance: int | None = None,
    image_similarity: float | None = None,
) -> dict:
    """inspect.json + report.html in `out`: sizes, lengths, labels, duplicates, leakage, languages
    (images: sizes, modes, labels, exact and perceptual-hash duplicates, leakage, unreadable files)."""
    image = {
        k: v for k, v in (("image_distance", image_distance), ("image_similarity", image_similarity)) if v is not None
    }
    s = CleanSettings(near_threshold=near_threshold, **image)
    if is_image_source(path):
        result, pairs = inspect_images(path, s, text_column, label_column)
        _write_inspection(out, result, _inspect_images_html(result, pairs))
        return result
    raw = read_splits(path)
    result = {"source": str(path), "description": raw.description, "splits": {}}
    train_keys, train_near, lengths = None, None, {}
    with _progress() as progress:
        for split in _ordered(raw.splits):
            ds, where = raw.splits[split], raw.origin[split]
            tcol, lcol = _columns(ds, where, text_column, label_column)
            texts = ds[tcol]
            task = progress.add_task(f"inspecting {split}", total=len(ds))
            near, seen = NearDuplicates(s.near_threshold, s.num_perm, s.shingle), {}
            verdicts = scan_split(
                split,
                texts,
                s,
                seen,
                near,
                train_keys if split != "train" else None,
                train_near if split != "train" else None,
                progress=lambda n: progress.advance(task, n),
            )
            words = np.array([len(str(t or "").split()) for t in texts])
            chars = np.array([len(str(t or "")) for t in texts])
            lengths[split] = words
            rng = np.random.default_rng(0)
            sample = rng.permutation(len(texts))[:language_sample]
            langs = Counter(detect_language(str(texts[i])) for i in sample if str(texts[i] or "").strip())
            info = {
                "source": where,
                "rows": len(ds),
                "columns": ds.column_names,
                "text_column": tcol,
                "words": _percentiles(words),
                "chars": _percentiles(chars),
                "empty": int(sum(1 for t in texts if not str(t or "").strip())),
                "garbled": int(sum(garbled(str(t)) for t in texts if t)),
                "html_remnants": int(sum(has_html(str(t)) for t in texts if t)),
                "issues": dict(Counter(r for r in verdicts.reasons if r)),
                "languages": {k: round(v / max(1, sum(langs.values())), 4) for k, v in langs.most_common(10)},
                "examples": {
                    r: [str(texts[i])[:200] for i, x in enumerate(verdicts.reasons) if x == r][:3]
                    for r in set(verdicts.reasons)
                    if r
                },
            }
            if lcol is not None:
                info["label_column"] = lcol
                info.update(_label_report(ds[lcol]))
            result["splits"][split] = info
            if split == "train":
                train_keys, train_near = seen, near
    _write_inspection(out, result, _inspect_html(result, lengths))
    return result


def _write_inspection(out: str | Path, result: dict, html: str) -> None:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "inspect.json", result)
    atomic_write_text(out / "report.html", html)


def _percentiles(values: np.ndarray) -> dict:
    if not len(values):
        return {}
    return {f"p{q}": int(np.percentile(values, q)) for q in (5, 50, 95)} | {"max": int(values.max())}


def _label_report(values: list) -> dict:
    counts = Counter("<missing>" if v is None else str(v) for v in values)
    variants: dict[str, list[str]] = {}
    for name in counts:
        variants.setdefault(name.strip().lower(), []).append(name)
    odd = {k: v for k, v in variants.items() if len(v) > 1 or v[0] != k and v[0].strip() != v[0]}
    report = {"class_balance": dict(counts.most_common())}
    if odd:
        report["label_variants"] = odd  # e.g. "positive" / "Positive " : fix with clean --normalize-labels
    return report


def _inspect_html(result: dict, lengths: dict[str, np.ndarray]) -> str:
    import html as _html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figs = []
    fig, ax = plt.subplots(figsize=(7, 3.2))
    for split, words in lengths.items():
        ax.hist(np.clip(words, 0, np.percentile(words, 99) if len(words) else 1), bins=50, alpha=0.5, label=split)
    ax.set(xlabel="words per row (clipped at p99)", ylabel="rows", title="text length")
    ax.legend()
    figs.append(figure_to_data_uri(fig))
    plt.close(fig)
    splits = result["splits"]
    balance = _class_balance_figure(splits)
    if balance:
        figs.append(balance)
    sections = []
    for split, v in splits.items():
        rows = {
            k: v[k]
            for k in ("source", "rows", "text_column", "label_column", "empty", "garbled", "html_remnants")
            if k in v
        }
        rows.update(
            {
                "words p5/p50/p95/max": "/".join(str(x) for x in v["words"].values()),
                "issues (duplicates, leakage, ...)": v["issues"] or "none",
                "languages (sample)": v["languages"],
            }
        )
        if "label_variants" in v:
            rows["label variants"] = v["label_variants"]
        examples = "".join(
            f"<h4>{_html.escape(r)}</h4><ul>" + "".join(f"<li>{_html.escape(t)}</li>" for t in ex) + "</ul>"
            for r, ex in v["examples"].items()
        )
        sections.append(f"<h2>{_html.escape(split)}</h2>{html_table(rows)}{examples}")
    images = "".join(f'<img src="{u}">' for u in figs)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>fmloop data inspect</title><style>{CSS}</style>"
        f"</head><body><h1>{_html.escape(result['source'])}</h1><p>{_html.escape(result['description'])}</p>"
        f"{images}{''.join(sections)}</body></html>"
    )


def _class_balance_figure(splits: dict) -> str | None:
    """Share of each class per split as grouped bars (None when nothing is labeled)."""
    if not any("class_balance" in v for v in splits.values()):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.2))
    names = sorted({k for v in splits.values() for k in v.get("class_balance", {})})
    width = 0.8 / len(splits)
    for j, (split, v) in enumerate(splits.items()):
        total = max(1, sum(v.get("class_balance", {}).values()))
        ax.bar(
            np.arange(len(names)) + j * width,
            [v.get("class_balance", {}).get(n, 0) / total for n in names],
            width,
            label=split,
        )
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right")
    ax.set(ylabel="share of rows", title="class balance")
    ax.legend()
    uri = figure_to_data_uri(fig)
    plt.close(fig)
    return uri


def _inspect_images_html(result: dict, pairs: list) -> str:
    import html as _html

    figures = [u for u in (_class_balance_figure(result["splits"]),) if u]
    pair_uri = pairs_figure(pairs)
    sections = []
    for split, v in result["splits"].items():
        rows = {
            "source": v["source"],
            "images": v["rows"],
            "sizes (most common)": v["sizes"],
            "modes": v["modes"],
            "issues (duplicates, leakage, unreadable)": v["issues"] or "none",
        }
        examples = "".join(
            f"<h4>{_html.escape(r)}</h4><ul>" + "".join(f"<li>{_html.escape(t)}</li>" for t in ex) + "</ul>"
            for r, ex in v["examples"].items()
        )
        sections.append(f"<h2>{_html.escape(split)}</h2>{html_table(rows)}{examples}")
    images = "".join(f'<img src="{u}">' for u in figures)
    if pair_uri:
        images += (
            f"<h2>Duplicates and leaks</h2><p>Top row: the flagged image; bottom row: the image it matched.</p>"
            f'<img alt="duplicate pairs" src="{pair_uri}">'
        )
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>fmloop data inspect</title><style>{CSS}</style>"
        f"</head><body><h1>{_html.escape(result['source'])}</h1>{images}{''.join(sections)}</body></html>"
    )
