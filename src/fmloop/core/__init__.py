"""Shared machinery every stage uses: config, catalog, artifacts, runtime, errors."""
