"""Transfer strategies: which parameters train and at what learning rate (fmloop.adapt.strategies).

The strategy names are checked here, without importing torch, so that a config with a mistyped
strategy is refused before any heavy import."""

import re

STRATEGY_PATTERN = re.compile(r"^(full|linear-probe|gradual|llrd|lora|embedding|contrastive|freeze:\d+)$")
# `embedding` trains nothing in the loop: a frozen encoder's pooled, normalised embeddings and a
# scikit-learn logistic regression (fmloop.train.embedding); `contrastive` first adapts the encoder
# on same / different-class sentence pairs, SetFit's method (fmloop.train.contrastive).
STRATEGY_NAMES = "full, linear-probe, freeze:K, gradual, llrd, lora, embedding, contrastive"
