"""fmloop: pretrain a foundation model on your own data, adapt it, compress it, serve it, improve it.

The public Python API is imported lazily so that `import fmloop.core...` stays cheap (the heavy
libraries load only when a stage is used).
"""

import warnings

from fmloop.core.version import __version__

# peft reads transformers' deprecated `is_gradient_checkpointing` whenever it wraps or loads an
# adapter, and transformers warns on every read: noise on each LoRA run, evaluate and predict.
warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)

# public name -> (module, attribute); the stages' entry points are their modules' `run`
_API = {
    "load_config": ("fmloop.core.config", "load_config"),
    "PretrainConfig": ("fmloop.train.config", "PretrainConfig"),
    "pretrain": ("fmloop.train.pretrain", "run"),
    "FinetuneConfig": ("fmloop.train.config", "FinetuneConfig"),
    "finetune": ("fmloop.train.finetune", "run"),
    "load": ("fmloop.models.loading", "load"),
}

__all__ = ["__version__", *_API]

# Registry references (models:/NAME@ALIAS) work wherever a model folder does; this registers the
# resolver only (MLflow loads when a reference is first used).
import fmloop.registry  # noqa: E402,F401


def __getattr__(name):
    if name in _API:
        import importlib

        module, attribute = _API[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'fmloop' has no attribute {name!r}")
