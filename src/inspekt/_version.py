"""The package version, at the bottom of the layers (``inspekt.__version__`` re-exports it)."""

__version__ = "0.1.0"
