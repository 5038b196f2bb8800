"""Compression and export: distillation, pruning, int8 quantization, ONNX export, ensembles and
the trade-off report. Every compressed model is checked against its parent on real data."""
