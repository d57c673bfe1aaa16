"""Models by name: ``create_model``, ``list_models``, ``get_entry``, ``register_model``.

The built-in models register on first use of these names, so that importing a submodule (the
runtime that serves ONNX, the training loop) does not import every network and torch with it.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = ("ModelEntry", "create_model", "get_entry", "list_models", "register_model")
_BUILTINS = ("tiny", "segment", "detect", "timm_models", "anomaly")

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name not in _API:
        raise AttributeError(f"module 'inspekt.models' has no attribute {name!r}")
    for module in _BUILTINS:  # registers the built-in models
        importlib.import_module(f"inspekt.models.{module}")
    return getattr(importlib.import_module("inspekt.models.registry"), name)
