"""The microst version: one place, read by the package, by pyproject.toml and by every file microst writes."""
__version__ = "0.1.0"
