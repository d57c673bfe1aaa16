"""Models by name: ``create_model``, ``list_models``. Importing this registers every model."""

from inspekt.models import anomaly, segment, timm_models, tiny  # noqa: F401  (register the built-in models)
from inspekt.models.registry import ModelEntry, create_model, get_entry, list_models, register_model

__all__ = ["ModelEntry", "create_model", "get_entry", "list_models", "register_model"]
