"""The package version (a leaf module: the IR builder stamps it on every model)."""

__version__ = "0.1.0"
