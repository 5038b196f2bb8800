"""The transfer ladder: test accuracy against the number of labels, for each way of starting a
model, on the same data with the same label subsets and seeds in every cell, beside the classic
floor (TF-IDF + logistic regression for text, the small CNN from scratch for images).

    OUT/cells/STRATEGY-BUDGET-seedN/   a fine-tuning run dir per cell (its model/ removed unless
                                       keep_models) and cell.json: test accuracy, labels, seconds
    OUT/dapt/                          the base's continued masked-LM pretraining (strategy dapt)
    OUT/ladder.csv                     one row per cell
    OUT/ladder.md, ladder.png          mean and 95% interval per strategy and budget; the plot
    OUT/report.html, manifest.json

Strategies: `scratch` (the architecture from random weights), the fine-tuning strategies of
`fmloop finetune` on the base (`full`, `linear-probe`, `lora`, `llrd`, `freeze:K`, `gradual`, `embedding`, `contrastive`), and
`dapt` (masked-LM pretraining of the base continued on the task's own training text, plus any
`unlabeled` corpus, then `full`). A budget is a number of training labels ("100") or a share of
them ("10%", "100%"); each seed draws its own stratified subset, the same for every strategy.
A rerun (or `fmloop run` after SIGTERM) keeps the cells that finished.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from fmloop.core import stop
from fmloop.core.artifacts import RunDir, atomic_write_json, atomic_write_text
from fmloop.core.config import StageConfig, build_config, deep_merge
from fmloop.core.errors import ConfigError, DataError, Interrupted
from fmloop.core.html import CSS, png_file_data_uri

log = logging.getLogger(__name__)

BUDGET = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(%|/class)?\s*$")
FEW_PER_CLASS = 100  # budgets below this many labels per class get FEW_SEEDS paired seeds by default
FEW_SEEDS = 5
TUNED = ("full", "linear-probe", "lora", "llrd", "gradual", "embedding", "contrastive")


class LadderConfig(StageConfig):
    stage: ClassVar[str] = "ladder"
    base: str = Field(description="the pretrained model: a folder, a run dir, or a preset")
    data: str = Field(description="labeled data with a test split (every cell is scored on it)")
    budgets: list[str] = Field(
        ["8/class", "32/class", "1000", "100%"],
        min_length=1,
        description="training labels: '8/class' per class, '1000' in all, or '10%' of them",
    )
    strategies: list[str] = Field(
        ["scratch", "embedding", "contrastive", "full"],
        min_length=1,
        description="scratch, full, linear-probe, lora, ..., dapt",
    )
    seeds: int | None = Field(
        None,
        ge=1,
        le=10,
        description="seeds per cell, each drawing its own label subset, the same for every strategy "
        f"(default: {FEW_SEEDS} at budgets below {FEW_PER_CLASS} labels per class, else 1)",
    )
    floor: bool = Field(True, description="add TF-IDF + logistic regression (text) or the small CNN (images)")
    scratch_model: str | None = Field(
        None, description="the random-init architecture (default: base when a preset, else bert-mini / resnet-micro)"
    )
    tokenizer: str | None = Field(None, description="tokenizer folder for preset models (default: the base's)")
    unlabeled: str | None = Field(None, description="dapt: extra unlabeled text beside the task's training text")
    dapt: dict[str, Any] = Field(
        default_factory=dict, description="dapt pretraining overrides, e.g. {train: {max_time: 10m}}"
    )
    train: dict[str, Any] = Field(
        default_factory=dict, description="fine-tuning overrides for every cell, e.g. {epochs: 3}"
    )
    text_column: str | None = None
    label_column: str | None = None
    test_limit: int | None = Field(
        None, ge=10, description="text: score every cell on this many test rows (a seeded sample) instead of all"
    )
    keep_models: bool = Field(False, description="keep each cell's model/ (they can take gigabytes)")

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, values):
        for v in values:
            match = BUDGET.match(str(v))
            if not match or float(match.group(1)) <= 0 or (match.group(2) and float(match.group(1)) > 100):
                raise ValueError(f"must hold label counts like '100', '8/class' or shares like '10%' (got {v!r})")
        return [str(v).strip() for v in values]

    @field_validator("strategies")
    @classmethod
    def _strategies(cls, values):
        for v in values:
            if v not in ("scratch", "dapt", *TUNED) and not re.match(r"^freeze:\d+$", v):
                raise ValueError(
                    f"must be scratch, dapt, full, linear-probe, lora, llrd, gradual, embedding, contrastive or freeze:K (got {v!r})"
                )
        return values


# Budgets and cells -----------------------------------------------------------------------------


def limit_per_class(budget: str, n_classes: int) -> float | None:
    """A budget as fine-tuning's `limit_per_class`: labels per class, a share, or None (all)."""
    value, unit = BUDGET.match(budget).groups()
    if unit == "%":
        share = float(value) / 100
        return None if share >= 1 else share
    if unit == "/class":
        return max(1, round(float(value)))
    return max(1, round(float(value) / n_classes))


def seeds_for(cfg: "LadderConfig", limit: float | None) -> int:
    """Seeds of a budget: as set, else FEW_SEEDS below FEW_PER_CLASS labels per class (where one
    subset's luck is larger than the differences measured), else 1."""
    if cfg.seeds:
        return cfg.seeds
    return FEW_SEEDS if limit is not None and 1 <= limit < FEW_PER_CLASS else 1


def cell_name(strategy: str, budget: str, seed: int) -> str:
    return f"{strategy.replace(':', '')}-{budget.replace('%', 'pct').replace('/class', 'perclass')}-seed{seed}"


def _modality(cfg: LadderConfig) -> str:
    from fmloop.data.images import is_image_source

    return "image" if is_image_source(cfg.data) else "text"


def _is_preset(name: str) -> bool:
    """A preset name (random weights), not a model folder, run dir or registry reference."""
    from fmloop.models.presets import is_model_folder

    return not is_model_folder(name)


def _finetune_tree(cfg: LadderConfig, strategy: str, model: str, limit: float | None, seed: int, modality: str) -> dict:
    tokenizer = None
    if modality == "text" and _is_preset(model):
        from fmloop.models.presets import model_dir_of

        tokenizer = cfg.tokenizer or (
            None if _is_preset(cfg.base) else str(model_dir_of(str(Path(cfg.base).expanduser())))
        )
        if tokenizer is None:
            raise ConfigError(f"ladder: the preset {model!r} needs a tokenizer folder: set `tokenizer`.")
    train = deep_merge(cfg.train, {"seed": seed, "limit_per_class": limit})
    return {
        "strategy": "full" if strategy in ("scratch", "dapt") else strategy,
        "data": {"path": cfg.data, "text_column": cfg.text_column, "label_column": cfg.label_column},
        "model": {"name": model, "tokenizer": tokenizer},
        "train": train,
    }


def _scratch_model(cfg: LadderConfig, modality: str) -> str:
    if cfg.scratch_model:
        return cfg.scratch_model
    if _is_preset(cfg.base):
        return cfg.base
    return "bert-mini" if modality == "text" else "resnet-micro"


# Running ---------------------------------------------------------------------------------------


def run(cfg: LadderConfig, out: str | Path, *, resume: bool = False) -> RunDir:
    """Run every cell (keeping finished ones when `resume`); write the table, plot and report."""
    from fmloop.train import finetune
    from fmloop.train.config import FinetuneConfig

    out = Path(out)
    run_dir = RunDir(out)
    if not resume and out.exists() and any(out.iterdir()):
        raise ConfigError(f"ladder: {out} already exists; pass another --out, or --resume to keep its finished cells.")
    run_dir.create(allow_existing=True)
    run_dir.write_config(cfg.resolved())
    run_dir.write_manifest(kind="ladder", status="running")
    modality = _modality(cfg)
    if cfg.test_limit:
        sampled = _sample_test(cfg, out / "data", modality)
        cfg = cfg.model_copy(update={"data": sampled, "text_column": None, "label_column": None})
    classes = _class_count(cfg, modality)
    rows: list[dict] = []
    dapt_model = _dapt(cfg, out / "dapt", resume) if "dapt" in cfg.strategies else None
    seeds = {b: seeds_for(cfg, limit_per_class(b, classes)) for b in cfg.budgets}
    plan = [(s, b, seed) for s in cfg.strategies for b in cfg.budgets for seed in range(seeds[b])]
    if cfg.floor:
        plan += [("floor", b, seed) for b in cfg.budgets for seed in range(seeds[b])]
    for i, (strategy, budget, seed) in enumerate(plan, 1):
        folder = out / "cells" / cell_name(strategy, budget, seed)
        limit = limit_per_class(budget, classes)
        log.info("ladder cell %d/%d: %s, %s labels, seed %d", i, len(plan), strategy, budget, seed)
        done = folder / "cell.json"
        if resume and done.exists():
            rows.append(_read_cell(done))
            continue
        started = time.perf_counter()
        if strategy == "floor" and modality == "text":
            result = tfidf_floor(cfg, limit, seed)
            folder.mkdir(parents=True, exist_ok=True)
        else:
            model = {"scratch": _scratch_model(cfg, modality), "dapt": dapt_model, "floor": "cnn-small"}.get(
                strategy, cfg.base
            )
            tree = _finetune_tree(cfg, "scratch" if strategy == "floor" else strategy, model, limit, seed, modality)
            resumable = resume and RunDir(folder).resumable()
            tuned = finetune.run(build_config(FinetuneConfig, tree), folder, resume=resumable, overwrite=not resumable)
            manifest = tuned.read_manifest()
            if not _done(manifest):
                raise Interrupted(f"ladder stopped in cell {folder.name} at its checkpoint")
            result = _cell_result(manifest, folder)
            if not cfg.keep_models:
                shutil.rmtree(tuned.model_dir, ignore_errors=True)
        row = {"strategy": strategy, "budget": budget, "seed": seed, **result,
               "seconds": round(time.perf_counter() - started, 1)}  # fmt: skip
        atomic_write_json(done, row)
        rows.append(row)
        _write_outputs(out, rows, cfg)
        if stop.requested():
            raise Interrupted(f"ladder stopped after cell {folder.name}")
    summary = _write_outputs(out, rows, cfg)
    run_dir.write_manifest(status="finished", metrics={"cells": len(rows)}, summary=summary)
    return run_dir


def _sample_test(cfg: LadderConfig, folder: Path, modality: str) -> str:
    """A copy of the text data whose test split is a seeded sample of `test_limit` rows (the same
    for every cell); train and validation are copied whole."""
    import numpy as np

    from fmloop.data.labeled import load_labeled

    if modality != "text":
        raise ConfigError("ladder: test_limit applies to text data; image cells are scored on the whole test split.")
    if (folder / "test.jsonl").exists():
        return str(folder)
    data = load_labeled(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, hold_out=False)
    folder.mkdir(parents=True, exist_ok=True)
    for split, rows in data.splits.items():
        index = np.arange(len(rows))
        if split == "test" and len(rows) > cfg.test_limit:
            index = np.sort(np.random.default_rng(0).permutation(len(rows))[: cfg.test_limit])
        texts, labels = rows["text"], rows["label"]
        lines = (json.dumps({"text": texts[i], "label": data.labels[labels[i]]}) for i in index)
        atomic_write_text(folder / f"{split}.jsonl", "\n".join(lines) + "\n")
    return str(folder)


def _read_cell(path: Path) -> dict:
    return json.loads(path.read_text())


def _cell_result(manifest, folder: Path) -> dict:
    metrics = manifest.metrics
    if "test_accuracy" not in metrics:
        raise DataError(f"ladder: {folder} has no test accuracy: the data needs a test split every cell is scored on.")
    rows = (manifest.get("data_summary") or {}).get("rows", {})
    result = {"labels": rows.get("train"), "test_rows": rows.get("test"), "test_accuracy": metrics["test_accuracy"]}
    if "floor_test_accuracy" in metrics:  # TF-IDF on exactly the rows this cell trained on
        result["floor_accuracy"] = metrics["floor_test_accuracy"]
    return result


def _class_count(cfg: LadderConfig, modality: str) -> int:
    """The number of classes (label counts are split evenly over them); checks for a test split."""
    if modality == "image":
        from fmloop.data.images import load_images

        data = load_images(cfg.data, hold_out=False, image_column=cfg.text_column, label_column=cfg.label_column)
        splits, count = data.splits, len(data.labels or [])
    else:
        from fmloop.data.labeled import load_labeled

        data = load_labeled(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, hold_out=False)
        splits, count = data.splits, len(data.labels or [])
    if "train" not in splits or "test" not in splits:
        raise DataError(f"ladder: {cfg.data} needs train and test splits (it has {', '.join(splits)}).")
    return count


def _dapt(cfg: LadderConfig, out: Path, resume: bool) -> str:
    """Continue the base's masked-LM pretraining on the task's training text (labels unused) and the
    `unlabeled` corpus; returns the pretrained run dir."""
    from fmloop.data.labeled import load_labeled
    from fmloop.data.sources import load_text_corpus
    from fmloop.models.presets import model_dir_of
    from fmloop.train import pretrain
    from fmloop.train.config import PretrainConfig

    if _is_preset(cfg.base):
        raise ConfigError("ladder: dapt continues pretraining a pretrained base; `base` is a preset (random weights).")
    run = RunDir(out)
    if run.manifest_path.exists() and _done(run.read_manifest()):
        return str(out)
    corpus = out.parent / "dapt-corpus.jsonl"
    if not corpus.exists():
        texts = load_labeled(cfg.data, text_column=cfg.text_column, label_column=cfg.label_column, hold_out=False)
        extra = []
        if cfg.unlabeled:
            unlabeled = load_text_corpus(cfg.unlabeled).splits["train"]
            extra = unlabeled[unlabeled.column_names[0]]
        _write_corpus(corpus, list(texts.splits["train"]["text"]) + list(extra))
    base = str(model_dir_of(str(Path(cfg.base).expanduser())))  # a run dir's model/ (with its tokenizer)
    tree = deep_merge(
        {"objective": "mlm", "data": {"path": str(corpus)}, "model": {"name": base}, "tokenizer": {"path": base},
         "train": {"lr": 5e-5, "warmup_ratio": 0.06}},
        cfg.dapt,
    )  # fmt: skip
    resumable = resume and run.resumable()
    done = pretrain.run(build_config(PretrainConfig, tree), out, resume=resumable, overwrite=not resumable)
    if not _done(done.read_manifest()):
        raise Interrupted("ladder stopped during dapt pretraining at its checkpoint")
    return str(out)


def _done(manifest) -> bool:
    """Finished, or stopped by its time budget (its model saved): not stopped by a signal."""
    return manifest.status == "finished" or not stop.by_signal(manifest.get("stop_reason"))


def _write_corpus(path: Path, texts: list[str]) -> None:
    buffer = io.StringIO()
    for text in texts:
        buffer.write(json.dumps({"text": text}) + "\n")
    atomic_write_text(path, buffer.getvalue())


def tfidf_floor(cfg: LadderConfig, limit: float | None, seed: int) -> dict:
    """TF-IDF + logistic regression (evaluate.floor) on the rows a fine-tuned cell of this budget
    and seed trains on (finetune_text.budget_rows), scored on the test split."""
    import numpy as np

    from fmloop.evaluate.floor import fit_floor
    from fmloop.train.config import FinetuneConfig
    from fmloop.train.finetune_text import budget_rows

    tree = _finetune_tree(cfg, "full", cfg.base, limit, seed, "text")
    data = budget_rows(build_config(FinetuneConfig, tree))
    train, test = data.splits["train"], data.splits["test"]
    model = fit_floor(list(train["text"]), np.asarray(train["label"]), seed)
    accuracy = float(np.mean(model.predict(list(test["text"])) == np.asarray(test["label"])))
    return {"labels": len(train), "test_rows": len(test), "test_accuracy": accuracy}


# Table, plot, report ---------------------------------------------------------------------------


def summarise(rows: list[dict]) -> list[dict]:
    """Mean test accuracy per strategy and budget with a 95% interval: Student's t over seeds, or
    (one seed) the Wilson interval of the test accuracy itself; and the paired difference from the
    floor on the same subsets."""

    groups: dict[tuple, list[dict]] = {}
    floors = {(r["budget"], r["seed"]): r["test_accuracy"] for r in rows if r["strategy"] == "floor"}
    for r in rows:
        groups.setdefault((r["strategy"], r["budget"]), []).append(r)
    out = []
    for (strategy, budget), cells in groups.items():
        acc = [c["test_accuracy"] for c in cells]
        mean, half = _t_interval(acc)
        if len(acc) > 1:
            low, high = max(0.0, mean - half), min(1.0, mean + half)
        else:
            n = cells[0].get("test_rows")
            low, high = _wilson(mean, n) if n else (mean, mean)
        out.append({
            "strategy": strategy, "budget": budget, "labels": cells[0].get("labels"), "seeds": len(acc),
            "test_accuracy": round(mean, 4), "low": round(low, 4), "high": round(high, 4),
            "seconds": round(sum(c["seconds"] for c in cells) / len(cells), 1),
            **({} if strategy == "floor" else _against_floor(cells, floors)),
        })  # fmt: skip
    return out


def _t_interval(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95% Student's t interval over the values; 0 for one value)."""
    from scipy import stats

    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))
    return mean, float(stats.t.ppf(0.975, len(values) - 1) * sd / math.sqrt(len(values)))


def _against_floor(cells: list[dict], floors: dict) -> dict:
    """The mean paired difference from the floor over seeds (the same label subset per seed: the
    cell's own TF-IDF fit, else the floor cell of its budget and seed), with a t-interval."""
    diffs = []
    for c in cells:
        floor = c.get("floor_accuracy", floors.get((c["budget"], c["seed"])))
        if floor is not None:
            diffs.append(c["test_accuracy"] - floor)
    if not diffs:
        return {}
    mean, half = _t_interval(diffs)
    return {"vs_floor": round(mean, 4), "vs_floor_low": round(mean - half, 4), "vs_floor_high": round(mean + half, 4)}


def _wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _write_outputs(out: Path, rows: list[dict], cfg: LadderConfig) -> list[dict]:
    buffer = io.StringIO()
    fields = ["strategy", "budget", "seed", "labels", "test_accuracy", "floor_accuracy", "seconds"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k) for k in writer.fieldnames})
    atomic_write_text(out / "ladder.csv", buffer.getvalue())
    summary = summarise(rows)
    atomic_write_text(out / "ladder.md", table(summary, cfg))
    _plot(summary, out / "ladder.png", cfg)
    atomic_write_text(out / "report.html", _report(summary, out, cfg))
    return summary


def table(summary: list[dict], cfg: LadderConfig) -> str:
    budgets = list(dict.fromkeys(s["budget"] for s in summary))
    strategies = list(dict.fromkeys(s["strategy"] for s in summary))
    cell = {(s["strategy"], s["budget"]): s for s in summary}
    lines = [
        f"base {cfg.base}; data {cfg.data}; test accuracy, mean [95% interval]; the paired difference "
        f"from the floor on the same label subsets, in points [95% interval over seeds]; seconds per cell",
        "",
        "| strategy | " + " | ".join(f"{b} labels" for b in budgets) + " |",
        "|---|" + "---|" * len(budgets),
    ]
    for strategy in strategies:
        values = []
        for b in budgets:
            s = cell.get((strategy, b))
            floor = (
                f"; vs floor {100 * s['vs_floor']:+.1f} [{100 * s['vs_floor_low']:+.1f}, {100 * s['vs_floor_high']:+.1f}]"
                if s and "vs_floor" in s
                else ""
            )
            values.append(
                f"{s['test_accuracy']:.4f} [{s['low']:.3f}, {s['high']:.3f}]{floor}, {s['seconds']:.0f} s" if s else ""
            )
        lines.append(f"| {_label(strategy)} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def _label(strategy: str) -> str:
    return "floor (TF-IDF + LR / small CNN)" if strategy == "floor" else strategy


def _plot(summary: list[dict], path: Path, cfg: LadderConfig) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for strategy in dict.fromkeys(s["strategy"] for s in summary):
        points = sorted((s for s in summary if s["strategy"] == strategy), key=lambda s: s["labels"] or 0)
        x = [p["labels"] or 0 for p in points]
        y = [p["test_accuracy"] for p in points]
        err = [[p["test_accuracy"] - p["low"] for p in points], [p["high"] - p["test_accuracy"] for p in points]]
        ax.errorbar(
            x, y, yerr=err, marker="o", capsize=3, label=_label(strategy), ls="--" if strategy == "floor" else "-"
        )
    ax.set_xscale("log")
    ax.set_xlabel("training labels")
    ax.set_ylabel("test accuracy")
    ax.set_title(f"transfer ladder: {Path(cfg.base).name} on {Path(cfg.data).name}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def _report(summary: list[dict], out: Path, cfg: LadderConfig) -> str:
    image = png_file_data_uri(out / "ladder.png") if (out / "ladder.png").exists() else ""
    return (
        f"<!doctype html><meta charset='utf-8'><title>ladder</title><style>{CSS}</style>"
        f"<h1>Transfer ladder</h1><img src='{image}' alt='ladder'>"
        f"<pre>{html.escape(table(summary, cfg))}</pre>"
    )
