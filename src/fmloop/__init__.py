"""fmloop: pretrain a foundation model on your own data, adapt it, compress it, serve it, improve it."""

__version__ = "0.1.0"

from fmloop.core.config import load_config  # noqa: E402
from fmloop.train.pretrain import PretrainConfig, pretrain  # noqa: E402

__all__ = ["PretrainConfig", "__version__", "load_config", "pretrain"]
