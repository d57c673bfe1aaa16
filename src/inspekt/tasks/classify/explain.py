"""Grad-CAM explanations of classifiers: which pixels drove a class score.

The heat map is computed on exactly the input the model saw (``transforms.preprocess`` from
the card, as the Predictor does) and mapped back onto the original image with
``transforms.map_back``, so it aligns with the image for every resize policy (stretch,
letterbox, crop). Gradients need the torch network of the bundle; this runs on the CPU.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from inspekt import _compat
from inspekt.bundle import Bundle, open_bundle
from inspekt.draw import heat_overlay
from inspekt.errors import ConfigError, did_you_mean
from inspekt.io import iter_images
from inspekt.io.arrays import as_image
from inspekt.models.runtime import load_network
from inspekt.results import BatchReport, Prediction
from inspekt.tasks.classify.predict import predict_classify
from inspekt.transforms import map_back, preprocess

_compat.apply()  # the torchvision workaround, before pytorch_grad_cam imports torchvision

# isort: split
import pytorch_grad_cam as cams  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402

# CAM methods by name. Only methods that cost one forward and one backward pass per image;
# ScoreCAM / AblationCAM (one forward per channel) are too slow on a CPU to offer by default.
METHODS: dict[str, type] = {
    "gradcam": cams.GradCAM,
    "gradcam++": cams.GradCAMPlusPlus,
    "xgradcam": cams.XGradCAM,
    "hirescam": cams.HiResCAM,
    "layercam": cams.LayerCAM,
    "eigencam": cams.EigenCAM,
    "eigengradcam": cams.EigenGradCAM,
    "gradcam-elementwise": cams.GradCAMElementWise,
}
# How many conv layer names an unknown-layer message suggests (those nearest the head).
_SUGGESTED_LAYERS = 6
SIDE_GAP = 4  # white pixels between the image and its overlay in a side-by-side picture


@dataclass
class Explanation:
    """One image's explanation.

    Attributes:
        source: the file path (or ``<array>``).
        target: the class explained.
        method: the CAM method name (a key of ``METHODS``).
        layer: dotted module name of the explained layer.
        cam: HxW float32 in [0, 1] at the original image size (0 where the model saw nothing).
        overlay: HxWx3 uint8, the original image with the heat map blended in.
        prediction: the model's prediction for the image (label and confidence).
        image: the image explained (as given).
    """

    source: str
    target: str
    method: str
    layer: str
    cam: np.ndarray
    overlay: np.ndarray
    prediction: Prediction | None = None
    image: np.ndarray | None = None

    def side_by_side(self, gap: int = SIDE_GAP) -> np.ndarray:
        """The image and its overlay next to each other (a white ``gap`` between), HxWx3 uint8: what a
        reviewer needs to judge the heat map without the heat hiding the defect."""
        if self.image is None:
            return self.overlay
        left = self.image if self.image.ndim == 3 else np.repeat(self.image[..., None], 3, axis=2)
        spacer = np.full((left.shape[0], gap, 3), 255, np.uint8)
        return np.hstack([left, spacer, self.overlay])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the arrays summarised by their shape)."""
        predicted = self.prediction
        return {
            "path": self.source,
            "target": self.target,
            "method": self.method,
            "layer": self.layer,
            "predicted": predicted.label if predicted else None,
            "score": predicted.score if predicted else None,
            "cam_shape": list(self.cam.shape),
        }


def _conv_layer_names(network: nn.Module) -> list[str]:
    return [name for name, module in network.named_modules() if isinstance(module, nn.Conv2d)]


def default_layer(network: nn.Module) -> str:
    """The dotted name of the layer to explain by default: the last feature stage.

    timm models (also inside a wrapper) name their last stage in ``feature_info``; inspekt's
    ``tiny_cnn`` (and torchvision-style nets) keep their conv stages in a ``features``
    Sequential, whose last block is used; anything else falls back to its last ``Conv2d``.

    Args:
        network: the torch network.

    Returns:
        A name that ``network.get_submodule`` accepts.

    Raises:
        ConfigError: the network has no convolution layer to explain.
    """
    for prefix, module in network.named_modules():
        info = getattr(module, "feature_info", None)
        if isinstance(info, list) and info and isinstance(info[-1], dict) and info[-1].get("module"):
            name = ".".join(p for p in (prefix, info[-1]["module"]) if p)
            if _has_submodule(network, name):
                return name
    features = getattr(network, "features", None)
    if isinstance(features, nn.Sequential) and len(features):
        return f"features.{len(features) - 1}"
    convs = _conv_layer_names(network)
    if not convs:
        raise ConfigError(
            f"{type(network).__name__} has no convolution layer for Grad-CAM; pass layer= a module "
            "with an NxCxHxW output"
        )
    return convs[-1]


def _has_submodule(network: nn.Module, name: str) -> bool:
    try:
        network.get_submodule(name)
    except AttributeError:
        return False
    return True


def _resolve_layer(network: nn.Module, layer: str | None) -> tuple[str, nn.Module]:
    """The layer name and module to explain; an unknown name raises with candidates."""
    name = layer if layer is not None else default_layer(network)
    if not name or not _has_submodule(network, name):
        candidates = _conv_layer_names(network)[-_SUGGESTED_LAYERS:]
        hint = did_you_mean(name, [n for n, _ in network.named_modules() if n])
        raise ConfigError(
            f"layer {name!r} is not in {type(network).__name__}.{hint} Conv layers near the head: "
            f"{', '.join(candidates)} (or leave layer unset for {default_layer(network)!r})"
        )
    return name, network.get_submodule(name)


def _check_spatial(network: nn.Module, name: str, module: nn.Module, shape: tuple[int, ...]) -> None:
    """A CAM needs a feature map: the layer's output must be NxCxHxW."""
    seen: list[tuple[int, ...]] = []
    handle = module.register_forward_hook(lambda _m, _i, out: seen.append(tuple(getattr(out, "shape", ()))))
    try:
        with torch.no_grad():
            network(torch.zeros(1, *shape))
    finally:
        handle.remove()
    if not seen or len(seen[0]) != 4:
        got = f"output shape {list(seen[0])}" if seen else "no output (it is never called)"
        raise ConfigError(
            f"layer {name!r} gives {got}, not an NxCxHxW feature map; choose a convolution "
            f"stage (default: {default_layer(network)!r})"
        )


def _check_opacity(opacity: float) -> float:
    if not 0 <= opacity <= 1:
        raise ConfigError(f"opacity {opacity} must lie in [0, 1] (0: image only, 1: heat map only)")
    return float(opacity)


class Explainer:
    """Grad-CAM for a classification bundle: ``Explainer.load("model").explain(image)``."""

    def __init__(self, bundle: Bundle, network: nn.Module, *, method: str = "gradcam", layer: str | None = None):
        card = bundle.card
        if card.task != "classify":  # the classify task's own module: no other task has a CAM
            raise ConfigError(
                f"{bundle.path}: Grad-CAM explains classification models; this is a {card.task} "
                "bundle (its predictions already show where: a mask, an anomaly map or boxes)"
            )
        if method not in METHODS:
            raise ConfigError(
                f"unknown explanation method {method!r}.{did_you_mean(method, METHODS)} Methods: {', '.join(METHODS)}"
            )
        self.bundle, self.card, self.network, self.method = bundle, card, network.eval(), method
        self.layer, module = _resolve_layer(network, layer)
        _check_spatial(network, self.layer, module, (card.input.channels, *card.input.size))
        self._cam = METHODS[method](model=network, target_layers=[module])

    @classmethod
    def load(cls, bundle: str | Path | Bundle, *, method: str = "gradcam", layer: str | None = None) -> Explainer:
        """Open a bundle and prepare its torch network for explanations.

        Args:
            bundle: bundle folder, ``.inspekt`` file, run folder, or an opened ``Bundle``.
            method: a key of ``METHODS``.
            layer: dotted module name to explain (default: ``default_layer`` of the network).

        Returns:
            The explainer.

        Raises:
            BundleError: the bundle cannot be opened or its weights do not load.
            ConfigError: not a classification bundle, unknown method or layer.
        """
        opened = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
        return cls(opened, load_network(opened), method=method, layer=layer)

    def _class_index(self, target: str) -> int:
        classes = self.card.classes
        if target not in classes:
            raise ConfigError(
                f"{self.bundle.path}: class {target!r} is not one of the model's classes."
                f"{did_you_mean(target, classes)} Classes: {', '.join(classes)}"
            )
        return classes.index(target)

    def explain(
        self, image: np.ndarray | Any, *, target: str | None = None, source: str = "<array>", opacity: float = 0.5
    ) -> Explanation:
        """Explain one decoded image.

        Args:
            image: HxW or HxWx3 uint8 (``load_image(..., mode="keep")``).
            target: the class to explain (default: the predicted class).
            source: a name for the image, kept in the result.
            opacity: weight of the heat map in the overlay, in [0, 1].

        Returns:
            The explanation, its CAM and overlay at the image's own size.

        Raises:
            ConfigError: unknown class, opacity out of range, or ``image`` not an 8-bit image (numpy or PIL).
        """
        opacity = _check_opacity(opacity)
        index = None if target is None else self._class_index(target)
        image = as_image(image, "image")  # a PIL image, HxWx1 or RGBA as predict takes them
        x, geometry = preprocess(image, self.card.input)
        # Callers (a server, a notebook) may sit inside no_grad / inference_mode; CAMs need gradients.
        with torch.inference_mode(False), torch.enable_grad():
            batch = torch.from_numpy(x)[None]
            with torch.no_grad():
                logits = self.network(batch).numpy()
            prediction = predict_classify(self.card, [image], [source], lambda _: {self.card.outputs[0]: logits}, 1)[0]
            index = self.card.classes.index(prediction.label) if index is None else index
            model_cam = self._cam(input_tensor=batch, targets=[ClassifierOutputTarget(index)])[0]
        cam = np.clip(map_back(np.float32(model_cam), geometry), 0, 1)
        seen = map_back(np.ones(model_cam.shape, np.float32), geometry) > 0.5
        overlay = heat_overlay(image, cam, opacity, seen)
        return Explanation(source, self.card.classes[index], self.method, self.layer, cam, overlay, prediction, image)

    def explain_files(
        self,
        sources: Iterable[str | os.PathLike | bytes] | str | os.PathLike,
        *,
        target: str | None = None,
        opacity: float = 0.5,
        report: BatchReport | None = None,
    ) -> list[Explanation]:
        """Explain image files; bad files are skipped and recorded in ``report``.

        Args:
            sources: one path or an iterable of paths (or encoded bytes).
            target: the class to explain (default: each image's predicted class).
            opacity: weight of the heat map in the overlay, in [0, 1].
            report: collects skipped files (path + reason).

        Returns:
            One Explanation per image that could be read, in input order.

        Raises:
            ConfigError: unknown class or opacity out of range (before any file is read).
        """
        _check_opacity(opacity)
        if target is not None:
            self._class_index(target)
        if isinstance(sources, (str, os.PathLike, bytes)):
            sources = [sources]
        report = report if report is not None else BatchReport()
        return [
            self.explain(image, target=target, source=source, opacity=opacity)
            for source, image in iter_images(sources, mode="keep", report=report)
        ]

    def __repr__(self) -> str:
        return f"Explainer({self.bundle!r}, method={self.method}, layer={self.layer})"
