"""The package version (the one source: ``pyproject.toml`` repeats it for the build)."""

__version__ = "0.1.0"
