"""The one training loop, its callbacks, checkpoints, optimiser and objectives."""
