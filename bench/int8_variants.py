"""Is int8 faster than fp32 on this CPU? ONNX Runtime's dynamic int8 variants against the fp32 graph.

    .venv/bin/fmloop export RUN/model --format onnx --out ONNX        # a fine-tuned text model
    .venv/bin/python bench/int8_variants.py ONNX [--profile]
    .venv/bin/python bench/int8_variants.py --gemm

Quantizes the exported fp32 graph four ways (signed weights per channel, as `fmloop quantize`
does; unsigned weights; one scale per tensor; reduced range), then times each, and the fp32 graph,
on the same batches of 32 SST-2 validation sentences at every graph-optimisation level (2 threads,
best of two passes). `--profile` adds ONNX Runtime's per-operator time shares for fp32 and the
fmloop variant: when the int8 matrix products dominate and still run no faster than fp32, the
limit is the CPU's integer kernels, not the graph. `--gemm` (no model needed) times one matrix
product alone, fp32 against ONNX Runtime's dynamic int8, at MiniLM's shapes (800 token rows: a
batch of 32 sentences) and at one large shape: the ceiling of int8's speed-up on this CPU.
"""

from __future__ import annotations

import argparse
import collections
import csv
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SST2 = ROOT.parent / "shared" / "datasets" / "text" / "sst2"


def batches(folder: Path, n: int = 27, size: int = 32) -> list[dict]:
    from fmloop.data.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(folder)
    with open(SST2 / "validation.csv", newline="") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)][: n * size]
    out = []
    for i in range(0, len(texts), size):
        enc = tokenizer(texts[i : i + size], truncation=True, max_length=128, padding=True, return_tensors="np")
        out.append({k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")})
    return out


def session_for(path: Path, level=None, profile: str | None = None):
    """An ONNX Runtime CPU session on 2 threads (the default graph-optimisation level unless given)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    if level is not None:
        options.graph_optimization_level = level
    if profile:
        options.enable_profiling, options.profile_file_prefix = True, profile
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def per_second(path: Path, feeds: list[dict], level, profile: str | None = None) -> tuple[float, str]:
    session = session_for(path, level, profile)
    for feed in feeds[:3]:
        session.run(None, feed)
    best = 0.0
    for _ in range(2):
        start = time.perf_counter()
        for feed in feeds:
            session.run(None, feed)
        best = max(best, sum(len(f["input_ids"]) for f in feeds) / (time.perf_counter() - start))
    shares = ""
    if profile:
        kernel = collections.Counter()
        for event in json.loads(Path(session.end_profiling()).read_text()):
            if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
                kernel[event["args"]["op_name"]] += event["dur"]
        total = sum(kernel.values())
        shares = ", ".join(f"{op} {t / total:.0%}" for op, t in kernel.most_common(6))
    return best, shares


GEMM_SHAPES = [(800, 384, 1536), (800, 1536, 384), (800, 384, 384), (4096, 1024, 4096)]  # M, K, N


def gemm() -> None:
    """One MatMul graph per shape, fp32 and dynamically quantized, timed with the same input."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from onnxruntime.quantization import QuantType, quantize_dynamic

    logging.getLogger().setLevel(logging.ERROR)
    print("| M x K x N | fp32 ms | fp32 GFLOP/s | int8 ms | int8 GOP/s | int8 speed-up |\n|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for m, k, n in GEMM_SHAPES:
            fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            weight = np.random.default_rng(0).standard_normal((k, n)).astype(np.float32) * 0.05
            graph = helper.make_graph(
                [helper.make_node("MatMul", ["X", "W"], ["Y"])],
                "gemm",
                [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["M", k])],
                [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
                [numpy_helper.from_array(weight, "W")],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            model.ir_version = 8
            onnx.save(model, str(fp32))
            quantize_dynamic(str(fp32), str(int8), weight_type=QuantType.QInt8)
            feed = {"X": np.random.default_rng(1).standard_normal((m, k)).astype(np.float32)}
            t32, t8 = (seconds_per_run(path, feed) for path in (fp32, int8))
            ops = 2 * m * k * n
            print(
                f"| {m} x {k} x {n} | {t32 * 1e3:.2f} | {ops / t32 / 1e9:.0f} | {t8 * 1e3:.2f} | "
                f"{ops / t8 / 1e9:.0f} | {t32 / t8:.2f}x |",
                flush=True,
            )


def seconds_per_run(path: Path, feed: dict, runs: int = 20) -> float:
    session = session_for(path)
    for _ in range(5):
        session.run(None, feed)
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(runs):
            session.run(None, feed)
        best = min(best, (time.perf_counter() - start) / runs)
    return best


def main() -> None:
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("onnx", type=Path, nargs="?", help="an `fmloop export` folder (or its model/ folder)")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--gemm", action="store_true", help="time one matrix product, fp32 vs int8, and stop")
    args = parser.parse_args()
    if args.gemm:
        return gemm()
    if args.onnx is None:
        parser.error("give an exported ONNX folder, or --gemm")
    folder = args.onnx / "model" if (args.onnx / "model" / "model.onnx").exists() else args.onnx
    fp32 = folder / "model.onnx"  # quantized like `fmloop quantize`: the linear layers and the embedding tables
    feeds = batches(folder)
    variants = {
        "signed weights, per channel (fmloop quantize)": dict(weight_type=QuantType.QInt8, per_channel=True),
        "unsigned weights, per channel": dict(weight_type=QuantType.QUInt8, per_channel=True),
        "signed weights, per tensor": dict(weight_type=QuantType.QInt8, per_channel=False),
        "signed weights, per channel, reduced range": dict(
            weight_type=QuantType.QInt8, per_channel=True, reduce_range=True
        ),
    }
    levels = {
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    with tempfile.TemporaryDirectory() as tmp:
        paths = {"fp32": fp32}
        logging.getLogger().setLevel(logging.ERROR)  # the quantizer logs every tensor
        for i, (name, kwargs) in enumerate(variants.items()):
            paths[name] = Path(tmp) / f"int8_{i}.onnx"
            quantize_dynamic(
                str(fp32),
                str(paths[name]),
                op_types_to_quantize=["MatMul", "Gemm", "Gather"],
                extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
                **kwargs,
            )
        print(f"sentences per second, {len(feeds)} batches of 32 SST-2 validation sentences, 2 threads\n")
        print("| graph | " + " | ".join(levels) + " |")
        print("|---|" + "---|" * len(levels))
        for name, path in paths.items():
            print(
                f"| {name} | " + " | ".join(f"{per_second(path, feeds, lvl)[0]:.0f}" for lvl in levels.values()) + " |",
                flush=True,
            )
        if args.profile:
            for name in ("fp32", next(iter(variants))):
                _, shares = per_second(paths[name], feeds, levels["all"], profile=str(Path(tmp) / "profile"))
                print(f"- {name}: {shares}")


if __name__ == "__main__":
    main()
