"""Segmentation inference: probabilities at the original size (resized, or tiled by
``inspekt.tiling``), post-processing into a mask and components (``inspekt.regions``), and the
Prediction every front door returns. Pure NumPy / OpenCV: serving needs no torch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from inspekt.card import InputSpec, ModelCard, PostProcess
from inspekt.regions import clean_mask, components
from inspekt.results import share_time
from inspekt.tasks.base import DrawnPrediction
from inspekt.tiling import blend_tiles
from inspekt.transforms import map_back, prepare, preprocess_batch

# (N, C, H, W) float32 model inputs -> (N, classes, H, W) logits
RunLogits = Callable[[np.ndarray], np.ndarray]
OK = "ok"


class SegmentPrediction(DrawnPrediction):
    """A segmentation: ``mask`` holds the class of every pixel, ``extra["components"]`` the regions."""

    def headline(self) -> str:
        return f"{self.extra['verdict']} · largest defect probability {self.score:.1%}"

    def describe(self) -> str:
        said = f"{len(self.extra['components'])} region(s), {self.extra['defect_area_pct']:.2f}% defect"
        cleaned = self.extra.get("cleaned_px", 0)
        if cleaned and not self.extra["components"]:  # "ok" beside a probability above the threshold: say why
            said += f"; the clean-up (minimum region area, kernel) removed the {cleaned} px above the threshold"
        return said


def softmax_maps(logits: np.ndarray) -> np.ndarray:
    """Per-pixel class probabilities from (N, C, H, W) logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=1, keepdims=True)).astype(np.float32)


def tiled_probabilities(prepared: np.ndarray, spec: InputSpec, run: RunLogits, batch_size: int = 16) -> np.ndarray:
    """(classes, H, W) probabilities of a prepared (scaled) image, blended over its windows."""
    return blend_tiles(prepared, spec, lambda batch: {"probs": softmax_maps(run(batch))}, batch_size)["probs"]


def _to_original(probs: np.ndarray, geometry) -> np.ndarray:
    return np.stack([map_back(channel, geometry) for channel in probs])


def probabilities(
    images: Sequence[np.ndarray], spec: InputSpec, run: RunLogits, batch_size: int = 16
) -> list[np.ndarray]:
    """Per-pixel class probabilities of decoded images at their original size.

    Args:
        images: HxW or HxWx3 uint8 images of any size.
        spec: the card's input specification (resized or tiled).
        run: the model: normalised NCHW batch -> NCHW logits.
        batch_size: images (or windows) per model call.

    Returns:
        One (classes, H, W) float32 array per image.
    """
    if spec.resize == "tile":
        out = []
        for image in images:
            prepared, geometry = prepare(image, spec)
            out.append(_to_original(tiled_probabilities(prepared, spec, run, batch_size), geometry))
        return out
    batch, geometries = preprocess_batch(images, spec)
    probs = softmax_maps(run(batch)) if len(batch) else []
    return [_to_original(p, g) for p, g in zip(probs, geometries)]


def postprocess(probs: np.ndarray, post: PostProcess) -> tuple[np.ndarray, np.ndarray]:
    """Threshold -> clean-up -> class per pixel.

    Args:
        probs: (classes, H, W) probabilities, class 0 background.
        post: threshold, kernel and minimum area.

    Returns:
        The class-index mask (HxW uint8, 0 = background) and the defect probability map
        (1 - background, HxW float32).
    """
    defect = 1.0 - probs[0]
    foreground = clean_mask(defect >= post.threshold, post)
    classes = probs[1:].argmax(axis=0).astype(np.uint8) + 1
    return np.where(foreground, classes, 0).astype(np.uint8), defect.astype(np.float32)


def predict_segment(
    card: ModelCard, images: Sequence[np.ndarray], sources: Sequence[str], run: RunLogits, batch_size: int = 16
):
    """Predictions (mask, components, verdict, defect map) for decoded images; the Predictor's segment path."""
    post = card.postprocess or PostProcess()
    # Resized inputs go through the model as one batch; tiled images one at a time (memory).
    groups = [[i] for i in range(len(images))] if card.input.resize == "tile" else [list(range(len(images)))]
    results = []
    for group in groups:
        t0 = time.perf_counter()
        maps = probabilities([images[i] for i in group], card.input, run, batch_size)
        for i, probs in zip(group, maps):
            results.append(_prediction(card, post, sources[i], probs))
        share_time(results[-len(group) :], t0)
    return results


def _prediction(card: ModelCard, post: PostProcess, source: str, probs: np.ndarray):
    mask, defect = postprocess(probs, post)
    found = components(mask, defect, card.classes)
    per_class = {name: round(float(p.max()), 6) for name, p in zip(card.classes[1:], probs[1:])}
    extra = {
        "verdict": "defect" if found else OK,
        "components": found,
        "defect_area_pct": round(100.0 * float((mask > 0).mean()), 4),
        # pixels at or above the threshold that the clean-up removed (specks under min_area, thin lines)
        "cleaned_px": int(((defect >= post.threshold) & (mask == 0)).sum()),
    }
    return SegmentPrediction(
        source,
        "segment",
        found[0]["class"] if found else OK,
        float(defect.max()),
        per_class,
        mask=mask,
        heatmap=defect,
        extra=extra,
    )
