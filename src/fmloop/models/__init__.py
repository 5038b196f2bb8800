"""Model presets and loading."""
