"""Transfer strategies: which parameters train and at what learning rate (fmloop.adapt.strategies).

The strategy names are checked here, without importing torch, so that a config with a mistyped
strategy is refused before any heavy import."""

import re

STRATEGY_PATTERN = re.compile(r"^(auto|full|linear-probe|gradual|llrd|lora|embedding|contrastive|freeze:\d+)$")
# what apply_strategy does to a model trained by the loop on its task loss (distill and prune too)
LOOP_STRATEGY_PATTERN = re.compile(r"^(full|linear-probe|gradual|llrd|lora|freeze:\d+)$")
LOOP_STRATEGY_NAMES = "full, linear-probe, freeze:K, gradual, llrd, lora"
# `embedding` trains nothing in the loop: a frozen encoder's pooled, normalised embeddings and a
# scikit-learn logistic regression (fmloop.train.embedding); `contrastive` first adapts the encoder
# on same / different-class sentence pairs, SetFit's method (fmloop.train.contrastive).
# `auto` (fine-tuning's default) picks one of them from the label budget and the base (train/choose.py).
STRATEGY_NAMES = "auto, full, linear-probe, freeze:K, gradual, llrd, lora, embedding, contrastive"
