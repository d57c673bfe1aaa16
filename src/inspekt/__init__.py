"""inspekt: train, evaluate, explain, export and serve image models for inspection.

The public API is imported lazily, so ``import inspekt`` stays fast and serving code that only
needs ``load_model`` never imports torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from inspekt import _compat  # noqa: F401  (sets NO_ALBUMENTATIONS_UPDATE before anything imports it)
from inspekt._version import __version__

_EXPORTS = {
    "load_image": "inspekt.io.decode",
    "ImageLoadError": "inspekt.errors",
    "InspektError": "inspekt.errors",
    "open_dataset": "inspekt.data",
    "open_bundle": "inspekt.bundle",
    "ModelCard": "inspekt.card",
    "Predictor": "inspekt.engine.predictor",
    "Prediction": "inspekt.results",
    "create_model": "inspekt.models",
    "list_models": "inspekt.models",
    "train": "inspekt.engine.trainer",
    "resume": "inspekt.engine.trainer",
    "TrainConfig": "inspekt.config",
    "Explainer": "inspekt.tasks.classify.explain",
    "evaluate": "inspekt.engine.evaluator",
    "save_threshold": "inspekt.engine.evaluator",
    "quantize_bundle": "inspekt.engine.quantize",
    "check_drift": "inspekt.drift",
    "profile_images": "inspekt.drift",
    "DriftResult": "inspekt.drift",
    "find_issues": "inspekt.curate",
}

__all__ = [*_EXPORTS, "load_model", "__version__"]

if TYPE_CHECKING:
    from inspekt.engine.predictor import Predictor


def load_model(bundle: Any, **options: Any) -> Predictor:
    """Load a bundle for prediction: ``inspekt.load_model("model.inspekt").predict("a.png")``.

    A model that failed the sanity check its training ran (e.g. it predicts one class for every image),
    or an INT8 bundle loaded with ``backend="torch"`` (its fp32 weights), loads with a ``UserWarning`` that
    says so, as the CLI says it (``Predictor.caveats``).

    Args:
        bundle: bundle folder, ``.inspekt`` file or run folder.
        **options: ``backend`` ("onnx" or "torch"), ``threads``, ``batch_size``.
    """
    import warnings

    from inspekt.engine.predictor import Predictor

    predictor = Predictor.load(bundle, **options)
    for caveat in predictor.caveats():
        warnings.warn(caveat, UserWarning, stacklevel=2)
    return predictor


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'inspekt' has no attribute {name!r}")
