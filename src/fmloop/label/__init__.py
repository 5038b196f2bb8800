"""Labeling with a model in the loop: confident-learning label checks and active learning
(suggest what to label next, import what people labeled)."""
