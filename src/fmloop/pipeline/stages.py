"""The stages a pipeline file can use: each is a stage contract's typed config plus its
`run(config, out) -> RunDir`, named as on the command line, with the outputs later stages may
refer to as `${stage.output}`.

Configs and run functions are named by import path and imported when used: the configs are
torch-free (a pipeline file is checked before torch loads), the run functions are not.
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from fmloop.core.catalog import Catalog
from fmloop.core.config import StageConfig
from fmloop.core.errors import ConfigError


@dataclass(frozen=True)
class StageKind:
    name: str
    config: str  # "module:Class" of the stage's StageConfig
    run: str  # "module:function" with the signature run(config, out[, resume=...])
    help: str
    # output name -> path inside the stage's folder ("" is the folder itself)
    outputs: dict[str, str] = field(default_factory=dict)

    def config_class(self) -> type[StageConfig]:
        return _attribute(self.config)

    def run_function(self) -> Callable:
        return _attribute(self.run)

    @property
    def resumable(self) -> bool:
        """A stage that continues an interrupted run from its checkpoint (`resume=True`)."""
        return "resume" in inspect.signature(self.run_function()).parameters

    def output_path(self, folder: Path, output: str) -> str:
        if output == "database":  # a SQLAlchemy URL, not a path
            return f"sqlite:///{(folder / self.outputs[output]).resolve()}"
        return str(folder / self.outputs[output]) if self.outputs[output] else str(folder)


def _attribute(spec: str):
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


STAGES: Catalog[StageKind] = Catalog("stage", ConfigError)


def _add(kind: StageKind) -> None:
    STAGES.register(kind.name, kind.help)(kind)


MODEL = {"out": "", "model": "", "report": "report.html"}

_add(
    StageKind(
        "clean",
        "fmloop.data.cleaning:CleanConfig",
        "fmloop.data.curate:run",
        "normalise text, drop empty, duplicate and leaking rows (every removal listed with its reason)",
        {"out": "", "data": "", "removed": "removed.jsonl"},
    )
)
_add(
    StageKind(
        "pretrain",
        "fmloop.train.config:PretrainConfig",
        "fmloop.train.pretrain:run",
        "self-supervised pretraining: masked LM, next-token LM, or image pretraining",
        {**MODEL, "tokenizer": "tokenizer"},
    )
)
_add(
    StageKind(
        "finetune",
        "fmloop.train.config:FinetuneConfig",
        "fmloop.train.finetune:run",
        "adapt a model to a labeled task (full, linear probe, LoRA, ...)",
        MODEL,
    )
)
_add(
    StageKind(
        "evaluate",
        "fmloop.evaluate.config:EvaluateConfig",
        "fmloop.evaluate.evaluation:run",
        "score a model on labeled data, against a baseline with a paired bootstrap",
        {"out": "", "metrics": "metrics.json", "report": "report.html"},
    )
)
_add(
    StageKind(
        "distill",
        "fmloop.compress.config:DistillConfig",
        "fmloop.compress.distill:run",
        "train a small student on a teacher's soft labels",
        MODEL,
    )
)
_add(
    StageKind(
        "prune",
        "fmloop.compress.config:PruneConfig",
        "fmloop.compress.prune:run",
        "remove weights, channels or heads, then recover",
        MODEL,
    )
)
_add(
    StageKind(
        "export",
        "fmloop.compress.config:ExportConfig",
        "fmloop.compress.onnx_export:run",
        "ONNX export checked against the PyTorch model",
        MODEL,
    )
)
_add(
    StageKind(
        "quantize",
        "fmloop.compress.config:QuantizeConfig",
        "fmloop.compress.quantize:run",
        "int8 weights (and activations) checked against the fp32 parent",
        MODEL,
    )
)
_add(
    StageKind(
        "ensemble",
        "fmloop.compress.config:EnsembleConfig",
        "fmloop.compress.ensemble:run",
        "combine models by vote, mean or fitted weights",
        MODEL,
    )
)
_add(
    StageKind(
        "users",
        "fmloop.pipeline.users:UsersConfig",
        "fmloop.pipeline.users:run",
        "serve a registered model and let simulated users predict, correct and audit over HTTP",
        {"out": "", "database": "feedback.db", "report": "report.html"},
    )
)
_add(
    StageKind(
        "labellers",
        "fmloop.pipeline.users:LabellersConfig",
        "fmloop.pipeline.users:label_queue",
        "simulated labellers give the audit queue (what a pending challenger asked about) its true labels",
        {"out": ""},
    )
)
_add(
    StageKind(
        "retrain",
        "fmloop.feedback.config:RetrainConfig",
        "fmloop.feedback.retrain:run",
        "fine-tune a challenger from feedback; promote it only through the gate",
        {"out": "", "report": "report.html"},
    )
)
_add(
    StageKind(
        "ladder",
        "fmloop.pipeline.ladder:LadderConfig",
        "fmloop.pipeline.ladder:run",
        "accuracy against labels for each transfer strategy, with the classic floor",
        {"out": "", "table": "ladder.csv", "plot": "ladder.png", "report": "report.html"},
    )
)
