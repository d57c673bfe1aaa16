"""Models by name: ``create_model``, ``list_models``. Importing this registers every model."""

from . import tiny  # noqa: F401  (registers tiny_cnn)
from .registry import ModelEntry, create_model, get_entry, list_models, register_model

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models", "register_model"]
