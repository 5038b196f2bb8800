"""`make demo` / `fmloop demo`: the whole loop on real data, run as the pipeline in demo.yaml.

  clean SST-2 -> pretrain bert-mini (masked LM on unlabeled IMDb reviews, 4 minutes at most) ->
  fine-tune it, and the same model from random weights, on the cleaned labels (90 s each) ->
  evaluate both (paired bootstrap) -> int8 export -> register the champion -> serve it to simulated
  users who correct its wrong answers -> a gated retrain from their feedback.

Each training stage has a time budget, so the demo ends within 15 minutes on a 2-core CPU; a
second run reuses every stage that is unchanged. Data is looked for in $FMLOOP_DATA, then
../shared/datasets beside the checkout, then the Hugging Face hub; the demo says which it used.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from fmloop.pipeline import runner, spec
from fmloop.pipeline.report import write_report

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]
DEMO_FILE = Path(__file__).with_name("demo.yaml")

# Each demo variable: relative paths inside a datasets folder (best first) and the hub fallback.
DATA = {
    "sst2": (["text/sst2"], "stanfordnlp/sst2"),
    "unlabeled": (
        ["text/imdb/unsup.jsonl.gz", "text/corpora/wikipedia_en_leads.txt", "text/corpora/tinyshakespeare.txt"],
        "stanfordnlp/imdb",
    ),
    "users": (["text/imdb"], "stanfordnlp/imdb"),
}


@dataclass
class DemoData:
    path: str
    origin: str


def dataset_roots() -> list[tuple[Path, str]]:
    roots = []
    if os.environ.get("FMLOOP_DATA"):
        roots.append((Path(os.environ["FMLOOP_DATA"]).expanduser(), "$FMLOOP_DATA"))
    for base in (Path.cwd(), REPO_ROOT):
        roots.append((base.parent / "shared" / "datasets", "../shared/datasets beside the checkout"))
    return roots


def find_data(candidates: list[str], hub_id: str) -> DemoData:
    for root, origin in dataset_roots():
        for rel in candidates:
            if (root / rel).exists():
                return DemoData(str(root / rel), f"{origin} ({root / rel})")
    return DemoData(hub_id, f"the Hugging Face hub ({hub_id}); set $FMLOOP_DATA to use local files")


def demo_pipeline(out: str | Path = "runs/demo", sets: list[str] = ()) -> spec.Pipeline:
    found = {name: find_data(*DATA[name]) for name in DATA}
    for name, data in found.items():
        log.info("demo data, %s: %s", name, data.origin)
    return spec.load(DEMO_FILE, [*(f"vars.{k}={v.path}" for k, v in found.items()), *sets], out)


def run_demo(out: str | Path = "runs/demo", sets: list[str] = (), force: bool = False) -> spec.Pipeline:
    """Run the demo pipeline (cached stages are skipped); the lifecycle report is written even
    when a stage fails or a signal stops it."""
    pipeline = demo_pipeline(out, sets)
    try:
        runner.run(pipeline, force=force, command="fmloop demo" + (f" --out {out}" if str(out) != "runs/demo" else ""))
    finally:
        write_report(pipeline)
    return pipeline


def _reached(kind: str, m: dict) -> str:
    """What a stage reached, in words, from its lock-file metrics."""
    nan = float("nan")
    if kind == "clean":
        return f"kept {m.get('kept')} of {m.get('rows')} rows"
    if kind == "pretrain":
        return (
            f"{m.get('steps')} steps, {m.get('tokens_seen', 0):,} tokens, held-out loss "
            f"{m.get('initial_eval_loss', nan):.2f} -> {m.get('eval_loss', nan):.2f}"
        )
    if kind == "finetune":
        return f"{m.get('steps')} steps, test accuracy {m.get('test_accuracy', nan):.4f}, {m.get('model_mb')} MB"
    if kind == "evaluate":
        return f"test accuracy {m.get('accuracy', nan):.4f}"
    if kind == "quantize":
        return (
            f"int8 ONNX, {m.get('model_mb')} MB, agrees with fp32 on {m.get('parity_agreement', nan):.1%} "
            f"of validation (accuracy {m.get('parity_accuracy', nan):.4f} vs {m.get('parity_parent_accuracy', nan):.4f})"
        )
    if kind == "users":
        return (
            f"served {m.get('served')} (accuracy {m.get('served_accuracy')}), {m.get('corrections')} corrections "
            f"({m.get('wrong_corrections')} wrong), {m.get('audit_labels')} audit labels"
        )
    if kind == "retrain":
        return (
            f"audit accuracy champion {m.get('champion_target', nan):.4f} vs challenger "
            f"{m.get('challenger_target', nan):.4f}; validation {m.get('champion_guard', nan):.4f} vs "
            f"{m.get('challenger_guard', nan):.4f}"
        )
    return ", ".join(f"{k} {v}" for k, v in list(m.items())[:3])


def summary(pipeline: spec.Pipeline) -> list[str]:
    """One line per stage (its time and what it reached in its budget), then the two verdicts."""
    import json

    stages = runner.read_lock(pipeline.out)["stages"]
    lines = []
    for name, stage in pipeline.stages.items():
        entry = stages.get(name, {})
        m = entry.get("metrics", {})
        budget = f" ({m['stop_reason']})" if "time budget" in str(m.get("stop_reason", "")) else ""
        lines.append(f"{name:9s} {entry.get('seconds', 0):5.0f} s  {_reached(stage.kind.name, m)}{budget}")
    evaluation = pipeline.stages["evaluate"].folder / "metrics.json"
    if evaluation.exists():
        ev = json.loads(evaluation.read_text())
        test = ev["comparison"]["test"]
        metric = test["metric"]
        lines.append(
            f"pretraining bought {test['difference']:+.4f} {metric} on the test split (pretrained "
            f"{ev['metrics'][metric]:.4f} vs random init {ev['comparison']['baseline_metrics'][metric]:.4f}, 95% "
            f"interval [{test['interval'][0]:+.4f}, {test['interval'][1]:+.4f}], paired bootstrap p = {test['p_value']:.3f})"
        )
    retrain = pipeline.stages["retrain"].folder / "manifest.json"
    if retrain.exists():
        m = json.loads(retrain.read_text())
        if m.get("status") == "finished":
            outcome = "promoted to @champion" if m.get("promoted") else "not promoted"
            lines.append(f"gate: challenger {m.get('challenger')} {outcome}. {m.get('reason')}")
    return lines
