"""`make demo`: the most complete loop fmloop has, on real data, in a few minutes on a laptop CPU.

  1. pretrain a small BERT (bert-mini) with masked LM on unlabeled movie reviews;
  2. fine-tune it on SST-2 sentiment labels;
  3. fine-tune the same architecture from random weights on the same labels;
  4. evaluate both on held-out SST-2 sentences (the test split) with a paired bootstrap test:
     what did pretraining buy?

Data is looked for in $FMLOOP_DATA, then ../shared/datasets beside the checkout, then the
Hugging Face hub; the demo says which it used.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from fmloop.core.config import load_config
from fmloop.core.errors import DataError
from fmloop.evaluate import evaluation
from fmloop.evaluate.config import EvaluateConfig
from fmloop.train import finetune, pretrain
from fmloop.train.config import FinetuneConfig, PretrainConfig

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]

# Relative paths inside a datasets folder, best first; the hub id is the online fallback.
CORPORA = ["text/imdb/unsup.jsonl.gz", "text/corpora/wikipedia_en_leads.txt", "text/corpora/tinyshakespeare.txt"]
LABELED = ["text/sst2"]
HUB = {"corpus": "stanfordnlp/imdb", "labeled": "stanfordnlp/sst2"}


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


def find_demo_corpus() -> DemoData:
    return find_data(CORPORA, HUB["corpus"])


def _fresh(path: Path) -> Path:
    """A demo is disposable: keep an earlier one beside the new one instead of refusing."""
    if not (path.exists() and any(path.iterdir())):
        return path
    n = 1
    while path.with_name(f"{path.name}-{n}").exists():
        n += 1
    return path.with_name(f"{path.name}-{n}")


def run_demo(
    out: str | Path = "runs/demo", max_steps: int = 300, max_docs: int = 20_000, finetune_epochs: float = 2.0
) -> dict:

    out = _fresh(Path(out))
    corpus, labeled = find_demo_corpus(), find_data(LABELED, HUB["labeled"])
    log.info("demo data: unlabeled text from %s; labels from %s", corpus.origin, labeled.origin)

    log.info("[1/4] pretraining bert-mini with masked LM")
    cfg = load_config(
        PretrainConfig,
        overrides={
            "objective": "mlm",
            "data": {"path": corpus.path, "max_docs": max_docs},
            "model": {"name": "bert-mini"},
            "train": {"max_steps": max_steps, "eval_every": 50, "checkpoint_every": 100, "lr": 1e-3},
        },
    )
    try:
        base = pretrain.run(cfg, out / "pretrain")
    except DataError as err:
        raise DataError(f"{err} (demo data from {corpus.origin})") from None

    tuned = {}
    for name, model in (("finetune", str(base.path)), ("scratch", "bert-mini")):
        log.info(
            "[%d/4] fine-tuning %s on sentiment labels",
            2 if name == "finetune" else 3,
            "the pretrained model" if name == "finetune" else "bert-mini from random weights",
        )
        cfg = load_config(
            FinetuneConfig,
            overrides={
                "model": {"name": model, "tokenizer": str(base.path / "tokenizer")},
                "data": {"path": labeled.path},
                "train": {"epochs": finetune_epochs, "lr": 5e-4, "seed": 0},
            },
        )
        tuned[name] = finetune.run(cfg, out / name)

    log.info("[4/4] evaluating pretrained+fine-tuned against fine-tuned-from-scratch")
    evaluated = evaluation.run(
        EvaluateConfig(model=str(tuned["finetune"].path), data=labeled.path, baseline=str(tuned["scratch"].path)),
        out / "evaluation",
    )
    result = json.loads((evaluated.path / "metrics.json").read_text())
    return {
        "out": out,
        "pretrain": base,
        "finetune": tuned["finetune"],
        "scratch": tuned["scratch"],
        "evaluation": result,
    }
