"""Multi-stage runs: the demo (and, later, YAML pipelines)."""
