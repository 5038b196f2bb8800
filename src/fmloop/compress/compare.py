"""`fmloop compare-models M1 M2 ... --data D`: the accuracy / size / latency trade-off in one table.

For every model: the headline metric on the data's test split (else validation) with a 95%
bootstrap interval, parameters, size on disk, CPU latency at batch 1 (p50 / p95 over single
examples) and throughput at batch 32. Where a model's parent (from its manifest) is in the list,
its row also shows the change against that parent. Writes compare.json, compare.md and
compare.png (metric against p50 latency, marker area by size on disk).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from fmloop.compress.artifact import folder_bytes
from fmloop.core.artifacts import RunDir, atomic_write_json, atomic_write_text
from fmloop.core.errors import DataError
from fmloop.evaluate.evaluation import labeled_inputs, model_logits
from fmloop.models.loading import load
from fmloop.models.presets import model_dir_of
from fmloop.tasks import get_task
from fmloop.tasks.bootstrap import bootstrap_intervals

log = logging.getLogger(__name__)


def count_parameters(model) -> int | None:
    """Parameters of a PyTorch model (quantized Linear layers counted from their weight shape), an
    ONNX graph's initializers, or an ensemble's members."""
    if hasattr(model, "members"):
        counts = [count_parameters(m) for m in model.members]
        return None if None in counts else sum(counts)
    if hasattr(model, "session"):
        import onnx

        graph = onnx.load(str(model.folder / "model.onnx"), load_external_data=False).graph
        return int(sum(np.prod(t.dims) for t in graph.initializer if len(t.dims) >= 1 and t.data_type != 6))
    total = sum(p.numel() for p in model.model.parameters())
    for module in model.model.modules():
        if hasattr(module, "_packed_params") and hasattr(module, "weight") and callable(module.weight):
            w = module.weight()
            total += w.numel() + (module.bias().numel() if module.bias() is not None else 0)
    return int(total)


def _parent_of(path: str) -> str | None:
    """The one model a run was made from (none for an ensemble of several)."""
    run = RunDir(model_dir_of(path).parent)
    if not run.manifest_path.exists():
        return None
    parents = run.read_manifest().parent_paths(run.path)
    return str(parents[0]) if len(parents) == 1 else None


def measure_latency(model, inputs, n_single: int = 100, batch: int = 32, n_batches: int = 5, warmup: int = 5) -> dict:
    """p50/p95 seconds per single example, and examples/s at `batch` (all inputs as given)."""
    pick = np.random.default_rng(0).permutation(len(inputs))
    take = (lambda idx: inputs[idx]) if isinstance(inputs, np.ndarray) else (lambda idx: [inputs[i] for i in idx])
    for i in range(min(warmup, len(pick))):
        model.logits(take(pick[i : i + 1]), 1)
    single = []
    for i in range(min(n_single, len(pick))):
        one = take(pick[i : i + 1])
        start = time.perf_counter()
        model.logits(one, 1)
        single.append(time.perf_counter() - start)
    model.logits(take(pick[:batch]), batch)
    done, start = 0, time.perf_counter()
    for b in range(n_batches):
        idx = pick[(b * batch) % len(pick) :][:batch]
        model.logits(take(idx), batch)
        done += len(idx)
    elapsed = time.perf_counter() - start
    return {
        "latency_p50_ms": 1000 * float(np.percentile(single, 50)),
        "latency_p95_ms": 1000 * float(np.percentile(single, 95)),
        "throughput_b32_per_s": done / elapsed,
    }


def compare_models(
    paths: list[str],
    data: str,
    out: str | Path,
    *,
    n_single: int = 100,
    n_batches: int = 5,
    batch_size: int = 64,
    text_column: str | None = None,
    label_column: str | None = None,
    threads: int | None = None,
) -> dict:
    import torch

    if threads:
        torch.set_num_threads(threads)
    rows, task, labels = [], None, None
    for path in paths:
        model = load(path, device="cpu")  # int8 and ONNX models run on the CPU: time every model there
        if task is not None and (model.task, model.labels) != (task, labels):
            raise DataError(
                f"{path} predicts {model.task} {model.labels or ''}, unlike {paths[0]}: compared "
                f"models must share task and labels."
            )
        task, labels = model.task, model.labels
        inputs, _, y, where = labeled_inputs(model, data, ("test", "validation"), text_column, label_column)
        logits = model_logits(model, inputs, batch_size, f"scoring {path}")
        metric, _ = get_task(task).headline
        metrics = get_task(task).metrics(y, logits, labels)
        intervals = bootstrap_intervals(task, y, logits, labels=labels)
        log.info("timing %s", path)
        row = {
            "model": str(path),
            "kind": type(model).__name__,
            "parent": _parent_of(path),
            "metric": metric,
            "value": float(metrics[metric]),
            "interval_95": intervals.get(metric),
            "parameters": count_parameters(model),
            "size_mb": folder_bytes(model.folder) / 1e6,
            **measure_latency(model, inputs, n_single, 32, n_batches),
            "data": where,
            "n": int(len(y)),
        }
        rows.append(row)
        del model
    by_folder = {str(model_dir_of(r["model"]).resolve()): r for r in rows}
    for row in rows:
        parent = by_folder.get(str(Path(row["parent"]).resolve())) if row["parent"] else None
        if parent is not None and parent is not row:
            row["vs_parent"] = {
                "model": parent["model"],
                "metric_change": row["value"] - parent["value"],
                "size_ratio": row["size_mb"] / parent["size_mb"],
                "speedup_b1": parent["latency_p50_ms"] / row["latency_p50_ms"],
                "speedup_b32": row["throughput_b32_per_s"] / parent["throughput_b32_per_s"],
            }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = {"data": rows[0]["data"], "task": task, "rows": rows, "threads": torch.get_num_threads()}
    atomic_write_json(out / "compare.json", result)
    atomic_write_text(out / "compare.md", markdown_table(rows))
    _plot(rows, out / "compare.png")
    return result


def markdown_table(rows: list[dict]) -> str:
    metric = rows[0]["metric"]
    lines = [
        f"| model | {metric} (95% CI) | parameters | size MB | p50 ms (b=1) | p95 ms (b=1) | per s (b=32) | vs parent |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ci = r["interval_95"]
        value = f"{r['value']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
        params = f"{r['parameters'] / 1e6:.2f}M" if r["parameters"] else "?"
        vs = r.get("vs_parent")
        rel = (
            (
                f"{vs['metric_change']:+.4f} {metric}, {vs['size_ratio']:.2f}x size, {vs['speedup_b1']:.2f}x b1, "
                f"{vs['speedup_b32']:.2f}x b32 vs {Path(vs['model']).name}"
            )
            if vs
            else ""
        )
        lines.append(
            f"| {r['model']} | {value} | {params} | {r['size_mb']:.1f} | {r['latency_p50_ms']:.2f} | "
            f"{r['latency_p95_ms']:.2f} | {r['throughput_b32_per_s']:.0f} | {rel} |"
        )
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    sizes = np.array([r["size_mb"] for r in rows])
    ax.scatter(
        [r["latency_p50_ms"] for r in rows],
        [r["value"] for r in rows],
        s=40 + 400 * sizes / max(sizes.max(), 1e-9),
        alpha=0.6,
    )
    for r in rows:
        ci = r["interval_95"]
        if ci:
            ax.plot([r["latency_p50_ms"]] * 2, ci, color="grey", lw=1)
        ax.annotate(
            Path(r["model"]).name,
            (r["latency_p50_ms"], r["value"]),
            textcoords="offset points",
            xytext=(6, 4),
            fontsize=8,
        )
    ax.set(
        xlabel="CPU latency p50 at batch 1 (ms)",
        ylabel=rows[0]["metric"],
        title="trade-off (marker area: size on disk)",
    )
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
