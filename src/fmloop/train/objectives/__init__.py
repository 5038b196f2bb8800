"""Objectives: nn.Modules that wrap a model and turn a batch into {"loss_sum", "count", ...}.

The loop divides `loss_sum` by the number of targets in the whole global batch (across gradient
accumulation and processes), so a step's gradient is the same whatever the micro-batching.
Wrapping the model in the objective (rather than calling the model from the loop) lets
DistributedDataParallel see the whole forward pass even when an objective calls submodules.
"""

from fmloop.core.catalog import Catalog
from fmloop.core.errors import ConfigError

OBJECTIVES: Catalog = Catalog("objective", error=ConfigError)

from fmloop.train.objectives import clm, contrastive, image, mlm, supervised  # noqa: E402,F401  (registers them)
