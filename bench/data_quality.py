"""Data cleaning and label-issue benchmarks on real data.

    .venv/bin/python bench/data_quality.py neardup [--n 1000]       # IMDb near-duplicate detection
    .venv/bin/python bench/data_quality.py imagedup [--dataset fashion_mnist] [--distance 4]
                                                                     # near-duplicate images
    .venv/bin/python bench/data_quality.py noise [--model MINILM [--finetune]] [--compare MINILM]
                                                                     # SST-2 with 10% flipped labels

neardup: 1,000 IMDb training reviews get a near-duplicate each (about 5% of words dropped, two
adjacent words swapped, punctuation removed or added, some words' case changed), inserted at
random places in the 25,000-review corpus. `fmloop data clean` (exact + near dedup) runs on the
result; recall = injected copies removed / 1,000; precision = removed rows that are injected
copies or whose matched row has a true word-shingle Jaccard >= the threshold (the corpus has a
few real duplicates of its own) / all rows removed as duplicates. Throughput in documents/s.

imagedup: 1,000 training images get an edited copy each (brightness and contrast changed by up
to 10%, Gaussian noise, re-encoded as JPEG at quality 75-90, `--shift` of them shifted by a pixel),
inserted at random places; `fmloop data clean` runs on the result. Recall = injected pairs found /
1,000; precision counts removals that are found pairs, or whose two images are at least as close
in pixels (mean absolute difference) as the median injected pair; the rest are listed as false.

noise: 10% of SST-2 training labels flipped (seeded); `fmloop data label-issues` flags rows;
precision and recall against the flipped set (--finetune: K-fold fine-tuning of --model for the
probabilities). With --compare BASE, BASE is fine-tuned on the noisy set and on the set with
flagged rows dropped (`--drop`), scored on SST-2 validation and test.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import gzip
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT.parent / "shared" / "datasets" / "text"
VISION = ROOT.parent / "shared" / "datasets" / "vision"


def fmloop(*args: str) -> float:
    print("$ fmloop " + " ".join(args), flush=True)
    start = time.time()
    subprocess.run([sys.executable, "-m", "fmloop", *args], check=True, cwd=ROOT)
    return time.time() - start


def perturb(text: str, rng: random.Random) -> str:
    words = text.split()
    words = [w for w in words if rng.random() > 0.05] or words
    for _ in range(2):
        if len(words) > 3:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
    out = []
    for w in words:
        if rng.random() < 0.05:
            w = w.strip(".,!?;:") or w
        if rng.random() < 0.03:
            w += rng.choice([",", ".", "!"])
        if rng.random() < 0.05:
            w = w.upper() if rng.random() < 0.5 else w.lower()
        out.append(w)
    return " ".join(out)


def neardup(args) -> None:
    from fmloop.data.cleaning import fold

    rng = random.Random(0)
    with gzip.open(TEXT / "imdb" / "train.jsonl.gz", "rt") as fh:
        rows = [json.loads(line) for line in fh]
    originals = rng.sample(range(len(rows)), args.n)
    copies = [{"text": perturb(rows[i]["text"], rng), "label": rows[i]["label"], "copy_of": i} for i in originals]
    corpus = [{**r, "copy_of": -1} for r in rows]
    for c in copies:
        corpus.insert(rng.randrange(len(corpus) + 1), c)
    work = Path(tempfile.mkdtemp(prefix="fmloop-neardup-"))
    with open(work / "train.jsonl", "w") as fh:
        for r in corpus:
            fh.write(json.dumps(r) + "\n")
    seconds = fmloop(
        "data",
        "clean",
        str(work / "train.jsonl"),
        "--out",
        str(work / "clean"),
        "--near-threshold",
        str(args.threshold),
        "--shingle",
        str(args.shingle),
    )
    removed = [json.loads(line) for line in (work / "clean" / "removed.jsonl").read_text().splitlines()]
    dup = [r for r in removed if r["reason"] in ("duplicate", "near_duplicate")]
    # An injected pair is found when either member is removed as a duplicate of the other (whichever
    # came first in the corpus is kept).
    position = {id(r): k for k, r in enumerate(corpus)}
    pair_of = {}
    for c in copies:
        a, b = (
            position[id(c)],
            position[
                id(
                    next(
                        r
                        for r in corpus
                        if r is not c and r.get("copy_of", -1) == -1 and r["text"] == rows[c["copy_of"]]["text"]
                    )
                )
            ],
        )
        pair_of[a], pair_of[b] = b, a

    def shingles(text: str) -> set:
        w = fold(text).split()
        return {" ".join(w[i : i + 3]) for i in range(max(1, len(w) - 2))}

    found, real, false = set(), 0, 0
    for r in dup:
        row, match = r["row"] - 1, int(r["detail"].rsplit(" ", 1)[-1]) - 1
        if pair_of.get(row) == match:
            found.add(frozenset((row, match)))
            continue
        a, b = shingles(corpus[row]["text"]), shingles(corpus[match]["text"])
        if len(a & b) / len(a | b) >= 0.5:
            real += 1
        else:
            false += 1
    recall = len(found) / args.n
    precision = (len(found) + real) / max(1, len(dup))
    print(f"\n## Near-duplicates in IMDb ({datetime.date.today()}, `{' '.join(sys.argv)}`)\n")
    print(
        f"- corpus {len(corpus)} reviews ({args.n} injected copies); removed as (near-)duplicates: {len(dup)}: "
        f"injected pairs found {len(found)}, real duplicates within the corpus {real} (word 3-gram Jaccard >= 0.5 "
        f"with the row they matched), false {false}"
    )
    print(
        f"- recall {recall:.3f}, precision {precision:.3f} (shingles of {args.shingle} words, threshold "
        f"{args.threshold}); {len(corpus) / seconds:.0f} documents/s end to end ({seconds:.0f}s, reading and writing included)"
    )


def edit_image(png: bytes, rng, shift: float = 0.5) -> bytes:
    """A near copy of an encoded image: brightness/contrast jitter, noise, JPEG, and with
    probability `shift` a 1-pixel shift."""
    import io

    import numpy as np
    from PIL import Image

    image = Image.open(io.BytesIO(png))
    mode = "L" if image.mode in ("L", "1") else "RGB"
    x = np.asarray(image.convert(mode)).astype(np.float64)
    x = (x - 128) * rng.uniform(0.9, 1.1) + 128 + rng.uniform(-10, 10) + rng.normal(0, 3, x.shape)
    if rng.random() < shift:
        x = np.roll(x, rng.choice([-1, 1]), axis=int(rng.integers(0, 2)))
    buf = io.BytesIO()
    Image.fromarray(x.clip(0, 255).astype(np.uint8), mode).save(buf, format="JPEG", quality=int(rng.integers(75, 91)))
    return buf.getvalue()


def imagedup(args) -> None:
    import io

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq
    from PIL import Image

    rng = np.random.default_rng(0)
    table = pq.read_table(VISION / args.dataset / "train.parquet")
    images = table.column("image").to_pylist()
    labels = table.column("label").to_pylist()
    originals = rng.choice(len(images), args.n, replace=False)
    rows = [(im, lab, -1) for im, lab in zip(images, labels)]
    for j in originals:
        copy = {"bytes": edit_image(images[j]["bytes"], rng, args.shift), "path": None}
        rows.insert(int(rng.integers(0, len(rows) + 1)), (copy, labels[j], int(j)))
    work = Path(tempfile.mkdtemp(prefix="fmloop-imagedup-"))
    out = pa.table({"image": [r[0] for r in rows], "label": [r[1] for r in rows], "copy_of": [r[2] for r in rows]})
    pq.write_table(out.replace_schema_metadata(table.schema.metadata), work / "train.parquet")
    seconds = fmloop(
        "data",
        "clean",
        str(work / "train.parquet"),
        "--out",
        str(work / "clean"),
        "--image-distance",
        str(args.distance),
        "--image-similarity",
        str(args.similarity),
    )
    removed = [json.loads(line) for line in (work / "clean" / "removed.jsonl").read_text().splitlines()]
    dup = [r for r in removed if r["reason"] in ("duplicate", "near_duplicate")]
    position_of_original = {r[2]: k for k, r in enumerate(rows) if r[2] >= 0}  # original index -> its copy
    original_at = {}
    k_orig = 0
    for k, r in enumerate(rows):
        if r[2] < 0:
            original_at[k_orig] = k
            k_orig += 1
    pair_of = {}
    for j, copy_pos in position_of_original.items():
        pair_of[copy_pos], pair_of[original_at[j]] = original_at[j], copy_pos

    def pixels(k):
        return np.asarray(Image.open(io.BytesIO(rows[k][0]["bytes"])).convert("L"), np.float64)

    found, others = set(), []
    for r in dup:
        row, match = r["row"] - 1, int(r["detail"].rsplit(" ", 1)[-1]) - 1
        if pair_of.get(row) == match:
            found.add(frozenset((row, match)))
        else:
            others.append((row, match, float(np.abs(pixels(row) - pixels(match)).mean())))
    injected_mad = (
        np.median([np.abs(pixels(a) - pixels(b)).mean() for a, b in (tuple(f) for f in found)]) if found else 0
    )
    real = [o for o in others if o[2] <= injected_mad]
    recall = len(found) / args.n
    precision = (len(found) + len(real)) / max(1, len(dup))
    print(f"\n## Near-duplicate images in {args.dataset} ({datetime.date.today()}, `{' '.join(sys.argv)}`)\n")
    print(
        f"- {len(rows)} images ({args.n} injected copies); removed as (near-)duplicates: {len(dup)}: injected pairs "
        f"found {len(found)}, other pairs {len(others)} of which {len(real)} are at least as close in pixels as the "
        f"median injected pair (mean absolute difference <= {injected_mad:.1f} of 255)"
    )
    print(
        f"- recall {recall:.3f}, precision {precision:.3f} (pHash distance <= {args.distance}, thumbnail "
        f"correlation >= {args.similarity}, {args.shift:.0%} of copies shifted by a pixel); "
        f"{len(rows) / seconds:.0f} images/s end to end ({seconds:.0f}s, decoding and writing included)"
    )
    if others and args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        show = sorted(others, key=lambda o: -o[2])[:10]
        fig, axes = plt.subplots(2, len(show), figsize=(1.3 * len(show) + 0.4, 3), squeeze=False)
        for c, (a, b, mad) in enumerate(show):
            for rr, k in enumerate((a, b)):
                axes[rr, c].imshow(pixels(k), cmap="gray")
                axes[rr, c].axis("off")
            axes[0, c].set_title(f"MAD {mad:.0f}", fontsize=8)
        fig.suptitle(f"{args.dataset}: removed pairs that were not injected (least similar first)", fontsize=9)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=110)
        print(f"- plot: {args.plot}")


def noise(args) -> None:
    rng = random.Random(0)
    with open(TEXT / "sst2" / "train.csv") as fh:
        rows = list(csv.DictReader(fh))
    flipped = set(rng.sample(range(len(rows)), len(rows) // 10))
    for i in flipped:
        rows[i]["label"] = "negative" if rows[i]["label"] == "positive" else "positive"
    work = Path(tempfile.mkdtemp(prefix="fmloop-noise-"))
    (work / "noisy").mkdir()
    with open(work / "noisy" / "train.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["text", "label"])
        w.writeheader()
        w.writerows(rows)
    for split in ("validation", "test"):
        (work / "noisy" / f"{split}.csv").write_text((TEXT / "sst2" / f"{split}.csv").read_text())
    extra = (
        (["--model", args.model] if args.model else [])
        + ["--filter-by", args.filter_by]
        + (["--finetune"] if args.finetune else [])
    )
    seconds = fmloop("data", "label-issues", str(work / "noisy"), "--out", str(work / "issues"), "--drop", *extra)

    def score(folder: Path) -> tuple[int, float, float]:
        flagged = {int(r["row"]) - 1 for r in csv.DictReader(open(folder / "label_issues.csv"))}
        hit = len(flagged & flipped)
        return len(flagged), hit / max(1, len(flagged)), hit / len(flipped)

    n, precision, recall = score(work / "issues")
    features = json.loads((work / "issues" / "label_issues.json").read_text())["features"]
    print(f"\n## Label issues in SST-2 with 10% flipped labels ({datetime.date.today()}, `{' '.join(sys.argv)}`)\n")
    print(f"- flipped {len(flipped)} of {len(rows)}; probabilities: {features} ({seconds:.0f}s)")
    print(f"- {args.filter_by}: flagged {n}; precision {precision:.3f}, recall {recall:.3f}")
    from fmloop.label.issues import FILTERS

    for other in FILTERS:  # the same probabilities, every cleanlab filter
        if other == args.filter_by:
            continue
        fmloop(
            "data",
            "label-issues",
            str(work / "noisy"),
            "--out",
            str(work / f"issues-{other}"),
            "--filter-by",
            other,
            "--probabilities",
            str(work / "issues" / "probabilities.parquet"),
        )
        n, precision, recall = score(work / f"issues-{other}")
        print(f"- {other}: flagged {n}; precision {precision:.3f}, recall {recall:.3f}", flush=True)
    if args.compare:
        metrics = {}
        for name, data in (("noisy", work / "noisy"), ("cleaned", work / "issues")):
            fmloop(
                "finetune",
                "--model",
                args.compare,
                "--data",
                str(data),
                "--out",
                str(work / f"ft-{name}"),
                *args.compare_args,
            )
            metrics[name] = json.loads((work / f"ft-{name}" / "manifest.json").read_text())["metrics"]
        for split in ("validation", "test"):
            print(
                f"- fine-tuned {args.compare} {' '.join(args.compare_args)}: SST-2 {split} accuracy "
                f"{metrics['noisy'][f'{split}_accuracy']:.4f} on the noisy labels, "
                f"{metrics['cleaned'][f'{split}_accuracy']:.4f} with flagged rows dropped"
            )


def active(args) -> None:
    """Accuracy against labels for each strategy of `fmloop label suggest` (same `choose` code), with
    a linear probe (logistic regression on MiniLM embeddings) retrained after every batch."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from fmloop.label.active import choose
    from fmloop.label.issues import embed

    rng = random.Random(0)
    with gzip.open(TEXT / "imdb" / "train.jsonl.gz", "rt") as fh:
        train = [json.loads(line) for line in fh]
    with gzip.open(TEXT / "imdb" / "test.jsonl.gz", "rt") as fh:
        test = [json.loads(line) for line in fh]
    pool = rng.sample(train, args.pool)
    val = rng.sample(test, args.validation)
    start = time.time()
    if args.features == "tfidf":
        # Word and word-pair TF-IDF read by the probe; k-center measures distance in a 256-d LSA space.
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.preprocessing import normalize

        vectorizer = TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True)
        X = vectorizer.fit_transform([r["text"] for r in pool])
        Xv = vectorizer.transform([r["text"] for r in val])
        geometry = normalize(TruncatedSVD(256, random_state=0).fit_transform(X))
    else:
        cache = Path(tempfile.gettempdir()) / f"fmloop-al-{args.pool}-{args.validation}-{Path(args.model).name}.npz"
        if cache.exists():  # the embeddings depend only on the seeded samples and the model
            X, Xv = np.load(cache)["X"], np.load(cache)["Xv"]
        else:
            X = embed([r["text"] for r in pool], args.model)
            Xv = embed([r["text"] for r in val], args.model)
            np.savez(cache, X=X, Xv=Xv)
        geometry = X
    print(f"features ({args.features}) for {len(pool) + len(val)} reviews in {time.time() - start:.0f}s", flush=True)
    y = np.array([r["label"] == "positive" for r in pool], dtype=int)
    yv = np.array([r["label"] == "positive" for r in val], dtype=int)
    budgets = list(range(50, 801, 50))
    if args.scan_C:
        # Random labeled subsets only, to pick the probe's C on the yardstick (random sampling).
        print(f"random labeled subsets, {args.seeds} seeds: accuracy by C (mean ± std)\n")
        shown = [50, 100, 200, 400, 800]
        print("| C | " + " | ".join(map(str, shown)) + " |")
        print("|---|" + "---|" * len(shown))
        for C in (float(c) for c in args.scan_C.split(",")):
            cells = []
            for n in shown:
                accs = []
                for seed in range(args.seeds):
                    idx = np.random.default_rng(seed).permutation(len(pool))[:n]
                    clf = LogisticRegression(max_iter=2000, C=C).fit(X[idx], y[idx])
                    accs.append(float((clf.predict(Xv) == yv).mean()))
                cells.append(f"{np.mean(accs):.4f} ± {np.std(accs):.4f}")
            print(f"| {C:g} | " + " | ".join(cells) + " |", flush=True)
        return
    curves = {}
    strategies = args.strategies
    for strategy in strategies:
        runs = []
        for seed in range(args.seeds):
            picked = list(np.random.default_rng(seed).permutation(len(pool))[: budgets[0]])
            accs = []
            for b in budgets:
                while len(picked) < b:  # rounds of `step` labels, the model retrained after each
                    rest = np.setdiff1d(np.arange(len(pool)), picked)
                    if strategy == "random":  # its picks ignore the model: skip the fit
                        probs = np.full((len(rest), 2), 0.5)
                    else:
                        clf = LogisticRegression(max_iter=2000, C=args.C).fit(X[picked], y[picked])
                        probs = clf.predict_proba(X[rest])
                    new = choose(
                        strategy, probs, geometry[rest], min(args.step, b - len(picked)), geometry[picked], seed
                    )
                    picked += [int(rest[i]) for i in new]
                clf = LogisticRegression(max_iter=2000, C=args.C).fit(X[picked], y[picked])
                accs.append(float((clf.predict(Xv) == yv).mean()))
            runs.append(accs)
        curves[strategy] = np.array(runs)
        print(strategy, " ".join(f"{b}:{a:.4f}" for b, a in zip(budgets, curves[strategy].mean(0))), flush=True)
    target = curves["random"].mean(0)[-1]
    print(f"\n## Active learning on IMDb ({datetime.date.today()}, `{' '.join(sys.argv)}`)\n")
    print(f"rounds of {args.step} labels, {args.seeds} seeds, probe C={args.C}, features {args.features}\n")
    print("| labels | " + " | ".join(strategies) + " |")
    print("|---|" + "---|" * len(strategies))
    for j, b in enumerate(budgets):
        print(
            f"| {b} | "
            + " | ".join(f"{curves[s].mean(0)[j]:.4f} ± {curves[s].std(0)[j]:.4f}" for s in strategies)
            + " |"
        )
    for s in strategies:
        reach = next((b for b, a in zip(budgets, curves[s].mean(0)) if a >= target), None)
        print(
            f"- {s}: reaches random's 800-label accuracy ({target:.4f}) with "
            f"{reach if reach else 'more than 800'} labels" + (f" ({reach / 800:.1%})" if reach else "")
        )
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for s in strategies:
        m, sd = curves[s].mean(0), curves[s].std(0)
        ax.plot(budgets, m, marker="o", label=s)
        ax.fill_between(budgets, m - sd, m + sd, alpha=0.15)
    ax.axhline(target, color="grey", ls=":", lw=1)
    probe = "logistic regression on TF-IDF" if args.features == "tfidf" else "linear probe on MiniLM"
    ax.set(
        xlabel="labeled examples",
        ylabel="validation accuracy",
        title=f"IMDb: {probe}, {args.seeds} seeds, rounds of {args.step}",
    )
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(args.plot, dpi=110)
    print(f"- plot: {args.plot}")


def main() -> None:
    from fmloop.label.active import STRATEGIES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("neardup")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--threshold", type=float, default=0.6)
    p.add_argument("--shingle", type=int, default=2)
    p = sub.add_parser("imagedup")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--distance", type=int, default=8)
    p.add_argument("--similarity", type=float, default=0.99)
    p.add_argument("--shift", type=float, default=0.5, help="share of copies also shifted by one pixel")
    p.add_argument("--plot", help="PNG of the non-injected pairs that were removed")
    p = sub.add_parser("noise")
    p.add_argument("--model", help="base model folder for features (default TF-IDF)")
    p.add_argument("--filter-by", default="confident_learning")
    p.add_argument("--finetune", action="store_true", help="label-issues --finetune (K-fold fine-tuning of --model)")
    p.add_argument("--compare", help="also fine-tune this base on the noisy and on the cleaned set")
    p.add_argument("--compare-args", nargs="*", default=[])
    p = sub.add_parser("active")
    p.add_argument("--model", help="base model folder for the embeddings (e.g. all-MiniLM-L6-v2)")
    p.add_argument(
        "--features",
        choices=["embeddings", "tfidf"],
        default="embeddings",
        help="what the logistic-regression probe reads: base-model embeddings or TF-IDF",
    )
    p.add_argument("--pool", type=int, default=4000)
    p.add_argument("--validation", type=int, default=2000)
    p.add_argument("--plot", default=str(ROOT / "docs" / "active_learning_imdb.png"))
    p.add_argument("--step", type=int, default=50, help="labels per round (the model is retrained after each)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--C", type=float, default=2.0, help="inverse L2 strength of the logistic-regression probe")
    p.add_argument(
        "--scan-C",
        help="comma-separated C values: only score random labeled subsets with each "
        "(to choose the probe's C on the baseline), no active learning",
    )
    p.add_argument(
        "--strategies",
        default=",".join(STRATEGIES),
        help="comma-separated subset of the strategies to run (random is always run: it is the yardstick)",
    )
    args = parser.parse_args()
    if args.what == "active":
        chosen = [s.strip() for s in args.strategies.split(",") if s.strip()]
        unknown = sorted(set(chosen) - set(STRATEGIES))
        if unknown:
            parser.error(f"--strategies: unknown {', '.join(unknown)}; choose from {', '.join(STRATEGIES)}")
        args.strategies = [s for s in STRATEGIES if s in chosen or s == "random"]
    if args.what == "active" and args.features == "embeddings" and not args.model:
        parser.error("active --features embeddings needs --model (a base model folder)")
    {"neardup": neardup, "imagedup": imagedup, "noise": noise, "active": active}[args.what](args)


if __name__ == "__main__":
    main()
