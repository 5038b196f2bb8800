"""`fmloop data inspect | clean | label-issues`."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from fmloop.cli.common import EXTRA, err_console, setup_logging, split_overrides, user_errors


def _image_defaults() -> dict:
    from fmloop.data.cleaning import CleanSettings

    return {k: CleanSettings.model_fields[k].default for k in ("image_distance", "image_similarity")}


IMAGE_DEFAULTS = _image_defaults()  # one source for the CLI defaults: CleanSettings

data_app = typer.Typer(help="Inspect, clean and fix labeled or unlabeled datasets.", no_args_is_help=True)


# Near-duplicate settings shared by `data inspect` and `data clean`.
NEAR_THRESHOLD = typer.Option(0.6, "--near-threshold", help="Jaccard similarity counted as a near-duplicate.")
IMAGE_DISTANCE = typer.Option(
    IMAGE_DEFAULTS["image_distance"],
    "--image-distance",
    help="Images: perceptual-hash bits (of 64) that may differ between near-duplicates.",
)
IMAGE_SIMILARITY = typer.Option(
    IMAGE_DEFAULTS["image_similarity"],
    "--image-similarity",
    help="Images: correlation their 32x32 grey thumbnails must reach as well (0: the hash alone).",
)


@data_app.command("inspect")
@user_errors
def inspect_command(
    data: str = typer.Argument(..., help="A file, a folder of split files, a save_to_disk folder or a hub id."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Where to write inspect.json and report.html. Default: ./inspect-NAME."
    ),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    label_column: Optional[str] = typer.Option(None, "--label-column"),
    near_threshold: float = NEAR_THRESHOLD,
    image_distance: int = IMAGE_DISTANCE,
    image_similarity: float = IMAGE_SIMILARITY,
):
    """Rows, lengths, class balance and label variants, exact and near duplicates, cross-split
    leakage, language mix, empty / garbled / HTML rows; an HTML report with plots. Image data:
    sizes, modes, class balance, exact and perceptual-hash duplicates, leakage, unreadable files."""
    from fmloop.data.curate import inspect_dataset

    setup_logging()
    out = out or Path(f"inspect-{Path(data).name or 'data'}")
    result = inspect_dataset(
        data,
        out,
        text_column,
        label_column,
        near_threshold=near_threshold,
        image_distance=image_distance,
        image_similarity=image_similarity,
    )
    for split, v in result["splits"].items():
        shape = (
            f"sizes {v['sizes']}, modes {v['modes']}"
            if result.get("modality") == "image"
            else f"words p50 {v['words'].get('p50')}"
        )
        err_console.print(
            f"{split}: {v['rows']} rows, {shape}, issues {v['issues'] or 'none'}"
            + (f", label variants {v['label_variants']}" if "label_variants" in v else "")
        )
    err_console.print(f"report: {out / 'report.html'}")


@data_app.command("clean")
@user_errors
def clean_command(
    data: str = typer.Argument(..., help="A file, a folder of split files, a save_to_disk folder or a hub id."),
    out: Path = typer.Option(
        ..., "--out", help="New folder for the cleaned splits (parquet), removed.jsonl and clean_report.json."
    ),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    label_column: Optional[str] = typer.Option(None, "--label-column"),
    min_words: int = typer.Option(1, "--min-words"),
    max_words: Optional[int] = typer.Option(None, "--max-words"),
    language: Optional[List[str]] = typer.Option(
        None, "--language", help="Keep only this language (ISO 639-1; repeat for several)."
    ),
    near_threshold: float = NEAR_THRESHOLD,
    image_distance: int = IMAGE_DISTANCE,
    image_similarity: float = IMAGE_SIMILARITY,
    shingle: int = typer.Option(
        2, "--shingle", help="Words per shingle for near-duplicates (smaller: more tolerant of edits)."
    ),
    no_near_dedup: bool = typer.Option(False, "--no-near-dedup", help="Skip MinHash near-duplicate removal."),
    no_leakage: bool = typer.Option(False, "--no-leakage", help="Keep validation/test rows that also occur in train."),
    normalize_labels: bool = typer.Option(False, "--normalize-labels", help="Strip and lower-case string labels."),
):
    """Normalise text (mojibake, Unicode, HTML remnants), apply length and language filters,
    remove exact and near duplicates and validation/test rows that leak from train. Every removed
    row is written to OUT/removed.jsonl with its reason; the input is never modified. Image data:
    unreadable files, exact and perceptual-hash (pHash) duplicates and leaks are removed."""
    from fmloop.data.cleaning import CleanSettings
    from fmloop.data.curate import clean_dataset

    setup_logging()
    settings = CleanSettings(
        min_words=min_words,
        max_words=max_words,
        languages=language or None,
        near_threshold=near_threshold,
        shingle=shingle,
        near_dedup=not no_near_dedup,
        leakage=not no_leakage,
        image_distance=image_distance,
        image_similarity=image_similarity,
    )
    report = clean_dataset(data, out, settings, text_column, label_column, normalize_labels)
    for split, v in report["splits"].items():
        err_console.print(f"{split}: kept {v['kept']} of {v['rows']}; removed {v['removed'] or 'none'}")
    err_console.print(f"cleaned data: {out}   removals: {out / 'removed.jsonl'}")


@data_app.command("label-issues", context_settings=EXTRA)
@user_errors
def label_issues_command(
    ctx: typer.Context,
    data: str = typer.Argument(..., help="Labeled data (classification)."),
    out: Path = typer.Option(
        ..., "--out", help="New folder for label_issues.csv (and the fixed dataset with --drop/--relabel)."
    ),
    model: Optional[str] = typer.Option(
        None,
        "--model",
        help="Base model folder whose embeddings join TF-IDF as features (fine-tuned per fold with --finetune).",
    ),
    finetune: bool = typer.Option(
        False,
        "--finetune",
        help="Add K fine-tuning runs of --model to the averaged probabilities: K fine-tunes slower, fewer correct labels flagged. Extra --train.key=value words go to those runs.",
    ),
    split: str = typer.Option("train", "--split"),
    folds: int = typer.Option(5, "--folds"),
    filter_by: str = typer.Option(
        "confident_learning",
        "--filter-by",
        help="cleanlab filter: confident_learning, prune_by_noise_rate (more flags: higher recall, lower precision), low_self_confidence (as many as confident learning, lowest probability of the given label first), low_normalized_margin, both, predicted_neq_given.",
    ),
    probabilities: Optional[str] = typer.Option(
        None,
        "--probabilities",
        help="Reuse the probabilities.parquet of an earlier run on the same data (e.g. to try another --filter-by without refitting).",
    ),
    drop: bool = typer.Option(False, "--drop", help="Write a dataset without the flagged rows."),
    relabel: bool = typer.Option(False, "--relabel", help="Write a dataset with the flagged rows relabelled."),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    label_column: Optional[str] = typer.Option(None, "--label-column"),
):
    """Find likely label errors with out-of-sample probabilities (K-fold logistic regression on
    base-model embeddings or TF-IDF, or K-fold fine-tuning with --finetune) and cleanlab's
    confident learning."""
    from fmloop.core.config import parse_overrides
    from fmloop.core.errors import ConfigError
    from fmloop.label.issues import label_issues

    setup_logging()
    if drop and relabel:
        raise ConfigError("Pass --drop or --relabel, not both.")
    overrides = parse_overrides(split_overrides(ctx.args))
    if overrides and not finetune:
        raise ConfigError(f"Config overrides ({' '.join(ctx.args)}) only apply to the fine-tuning runs of --finetune.")
    summary = label_issues(
        data,
        out,
        model=model,
        split=split,
        folds=folds,
        action="drop" if drop else "relabel" if relabel else None,
        text_column=text_column,
        label_column=label_column,
        filter_by=filter_by,
        finetune=finetune,
        overrides=overrides,
        probabilities=probabilities,
    )
    err_console.print(
        f"{summary['issues']} likely label errors among {summary['rows']} rows "
        f"(out-of-sample accuracy of the {summary['features']} model: {summary['out_of_sample_accuracy']:.3f}); "
        f"list: {out / 'label_issues.csv'}"
    )


label_app = typer.Typer(help="Choose what to label next and bring the annotations back.", no_args_is_help=True)


@label_app.command("suggest")
@user_errors
def suggest_command(
    model: str = typer.Option(..., "--model", help="A fine-tuned text classifier (folder or run dir)."),
    pool: str = typer.Option(..., "--pool", help="Unlabeled text: a file or folder, as for prediction."),
    out: Path = typer.Option(
        ..., "--out", help="New folder for tasks.json (Label Studio), tasks.csv and label_config.xml."
    ),
    n: int = typer.Option(100, "--n", help="How many rows to suggest."),
    strategy: str = typer.Option("margin", "--strategy", help="margin (default), entropy, kcenter, hybrid or random."),
    labeled: Optional[str] = typer.Option(None, "--labeled", help="Already labeled data: k-center picks away from it."),
    text_column: Optional[str] = typer.Option(None, "--text-column"),
    seed: int = typer.Option(0, "--seed"),
):
    """Pick the pool rows worth labeling next (active learning) and export them as Label Studio
    tasks with the model's guess, plus a CSV."""
    from fmloop.label.active import suggest

    setup_logging()
    summary = suggest(model, pool, out, n=n, strategy=strategy, labeled=labeled, text_column=text_column, seed=seed)
    err_console.print(
        f"{summary['n']} of {summary['pool_size']} pool rows chosen by {strategy}: "
        f"{out / 'tasks.json'} (import into Label Studio with {out / 'label_config.xml'}), {out / 'tasks.csv'}"
    )


@label_app.command("import")
@user_errors
def import_command(
    annotations: str = typer.Argument(..., help="A Label Studio JSON export, or a CSV with id, text, label."),
    out: Path = typer.Option(
        ..., "--out", help="New folder for the merged dataset (parquet splits) and conflicts.jsonl."
    ),
    into: Optional[str] = typer.Option(
        None, "--into", help="Labeled dataset to add the annotations to (its train split)."
    ),
    tasks: Optional[str] = typer.Option(
        None, "--tasks", help="The tasks.json that was annotated: ids outside it are conflicts."
    ),
):
    """Merge completed annotations into a labeled dataset; disagreements, unknown labels and
    unknown task ids are reported in conflicts.jsonl, not merged."""
    from fmloop.label.active import import_annotations

    setup_logging()
    s = import_annotations(annotations, out, into=into, tasks=tasks)
    err_console.print(
        f"added {s['added']} of {s['annotated']} annotated rows ({s['conflicts']} conflicts, see "
        f"{out / 'conflicts.jsonl'}); train now has {s['train_rows']} rows: {out}"
    )
