"""inspekt: train, evaluate, explain, export and serve image models for inspection.

The public API is imported lazily, so ``import inspekt`` stays fast and serving code that only
needs ``load_model`` never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from inspekt import _compat  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before anything imports it)

__version__ = "0.1.0"

_EXPORTS = {
    "load_image": "inspekt.io",
    "ImageLoadError": "inspekt.errors",
    "InspektError": "inspekt.errors",
    "open_dataset": "inspekt.data",
    "open_bundle": "inspekt.bundle",
    "ModelCard": "inspekt.card",
    "Predictor": "inspekt.predictor",
    "Prediction": "inspekt.predictor",
    "create_model": "inspekt.models",
    "list_models": "inspekt.models",
    "train": "inspekt.training",
    "resume": "inspekt.training",
    "TrainConfig": "inspekt.config",
    "Explainer": "inspekt.explain",
    "evaluate": "inspekt.evaluation",
    "quantize_bundle": "inspekt.quantize",
    "check_drift": "inspekt.drift",
    "profile_images": "inspekt.drift",
    "DriftResult": "inspekt.drift",
}

__all__ = [*_EXPORTS, "load_model", "__version__"]

if TYPE_CHECKING:
    from inspekt.predictor import Predictor


def load_model(bundle: Any, **options: Any) -> Predictor:
    """Load a bundle for prediction: ``inspekt.load_model("model.inspekt").predict("a.png")``.

    Args:
        bundle: bundle folder, ``.inspekt`` file or run folder.
        **options: ``backend`` ("onnx" or "torch"), ``threads``, ``batch_size``.
    """
    from inspekt.predictor import Predictor

    return Predictor.load(bundle, **options)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'inspekt' has no attribute {name!r}")
