"""Data in: sources, tokenizers, batching."""
