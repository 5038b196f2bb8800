"""`make demo`: the most complete loop fmloop has, on real data, in a few minutes on a laptop CPU.

Today that is: pretrain a small BERT with masked LM on movie reviews, then write its report.
Data is looked for in $FMLOOP_DATA, then ../shared/datasets beside the checkout, then the
Hugging Face hub; the demo says which it used.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from fmloop.core.config import load_config
from fmloop.core.errors import DataError
from fmloop.core.artifacts import RunDir
from fmloop.train.pretrain import PretrainConfig, pretrain

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[3]

# Relative paths inside a datasets folder, best first; the hub id is the online fallback.
LOCAL_CORPORA = ["text/imdb/unsup.jsonl.gz", "text/corpora/wikipedia_en_leads.txt", "text/corpora/tinyshakespeare.txt"]
HUB_CORPUS = "stanfordnlp/imdb"


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


def find_demo_corpus() -> DemoData:
    for root, origin in dataset_roots():
        for rel in LOCAL_CORPORA:
            if (root / rel).is_file():
                return DemoData(str(root / rel), f"{origin} ({root / rel})")
    return DemoData(HUB_CORPUS, f"the Hugging Face hub ({HUB_CORPUS}); set $FMLOOP_DATA to use local files")


def run_demo(out: str | Path = "runs/demo", max_steps: int = 300, max_docs: int = 20_000) -> RunDir:
    data = find_demo_corpus()
    log.info("demo data: %s", data.origin)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        # A demo is disposable: keep the previous one next to the new one instead of refusing.
        n = 1
        while out.with_name(f"{out.name}-{n}").exists():
            n += 1
        out = out.with_name(f"{out.name}-{n}")
    cfg = load_config(PretrainConfig, overrides={
        "objective": "mlm",
        "data": {"path": data.path, "max_docs": max_docs},
        "model": {"name": "bert-mini"},
        "train": {"max_steps": max_steps, "eval_every": 50, "checkpoint_every": 100, "lr": 1e-3},
    })
    try:
        return pretrain(cfg, out=out)
    except DataError as err:
        raise DataError(f"{err} (demo data from {data.origin})") from None
