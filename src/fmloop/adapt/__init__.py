"""Transfer strategies: which parameters train and at what learning rate (fmloop.adapt.strategies).

The strategy names are checked here, without importing torch, so that a config with a mistyped
strategy is refused before any heavy import."""

import re

STRATEGY_PATTERN = re.compile(r"^(full|linear-probe|gradual|llrd|lora|freeze:\d+)$")
