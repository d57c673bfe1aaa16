"""Anomaly inference: raw maps and scores from the graph, normalised so the calibrated threshold is
0.5, mapped back to the original image, thresholded into a mask, and the Prediction every front door
returns. Pure NumPy / OpenCV: serving needs no torch.

Large images: with ``input.resize == "tile"`` the image is scaled by ``input.scale`` and the model runs
on overlapping windows of ``input.size``; raw maps (and reconstructions) are blended with weights that
fall towards each window's border, and the image score is the largest window score.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from inspekt.card import AnomalySpec, InputSpec, ModelCard, PostProcess
from inspekt.draw import heat_overlay
from inspekt.models.anomaly.base import ANOMALY_MAP, RECONSTRUCTION, SCORE
from inspekt.regions import clean_mask, components
from inspekt.results import share_time
from inspekt.tasks.base import DrawnPrediction
from inspekt.tiling import blend_tiles
from inspekt.transforms import Geometry, map_back, prepare, preprocess_batch

ANOMALY = "anomaly"
RunOutputs = Callable[[np.ndarray], dict[str, np.ndarray]]  # NCHW float32 -> outputs by name


class AnomalyPrediction(DrawnPrediction):
    """An anomaly verdict: ``heatmap`` is the normalised anomaly map, ``mask`` its anomalous pixels."""

    def headline(self) -> str:
        return f"{self.label} · anomaly score {self.score:.3f}"

    def describe(self) -> str:
        return (
            f"{len(self.extra['components'])} region(s), {self.extra['anomaly_area_pct']:.2f}% of pixels "
            f"anomalous, raw score {self.extra['raw_score']}"
        )

    def overlay(self, image: np.ndarray | None = None, *, opacity: float = 0.4) -> np.ndarray:
        """The image (RGB, original size) with the anomaly map as a heat map at ``opacity`` and the
        anomalous regions outlined in white."""
        return heat_overlay(self._image(image), self.heatmap, opacity, outline=self.mask)


def normalise(raw: np.ndarray | float, threshold: float, scale: float) -> np.ndarray:
    """Map raw scores to [0, 1] with ``threshold`` -> 0.5: ``0.5 + 0.5 z / (1 + |z|)``, z = (raw -
    threshold) / scale. A heavy-tailed S-curve rather than a logistic: a score 1000 scales above the
    threshold is still told apart from one 100 scales above (0.9995 vs 0.995), so anomaly maps keep
    their shape instead of saturating to a flat 1."""
    z = (np.asarray(raw, dtype=np.float64) - threshold) / scale
    return (0.5 + 0.5 * z / (1.0 + np.abs(z))).astype(np.float32)


@dataclass
class RawOutput:
    """One image's raw model outputs at the original image size."""

    anomaly_map: np.ndarray  # HxW float32, raw units
    score: float  # raw image score
    reconstruction: np.ndarray | None  # HxW or HxWx3 uint8, or None


def _to_pixels(recon: np.ndarray, spec: InputSpec) -> np.ndarray:
    """A (C, H, W) reconstruction in normalised input space -> HxW(x3) uint8."""
    mean = np.asarray(spec.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(spec.std, dtype=np.float32)[:, None, None]
    pixels = np.clip((recon * std + mean) * 255 + 0.5, 0, 255).astype(np.uint8)
    return pixels[0] if len(pixels) == 1 else np.ascontiguousarray(pixels.transpose(1, 2, 0))


def _map_back_image(image: np.ndarray, geometry: Geometry) -> np.ndarray:
    if image.ndim == 2:
        return map_back(image, geometry)
    return np.stack([map_back(np.ascontiguousarray(image[:, :, c]), geometry) for c in range(3)], axis=2)


def _tiled(
    prepared: np.ndarray, spec: InputSpec, run: RunOutputs, batch_size: int
) -> tuple[np.ndarray, float, np.ndarray | None]:
    """Blended raw map (and reconstruction) over overlapping windows; score = the largest window score."""
    scores: list[float] = []

    def maps(batch: np.ndarray) -> dict[str, np.ndarray]:
        out = run(batch)
        scores.append(float(out[SCORE].max()))
        return {name: out[name] for name in (ANOMALY_MAP, RECONSTRUCTION) if name in out}

    blended = blend_tiles(prepared, spec, maps, batch_size)
    return blended[ANOMALY_MAP][0], max(scores), blended.get(RECONSTRUCTION)


def raw_outputs(
    images: Sequence[np.ndarray], spec: InputSpec, run: RunOutputs, batch_size: int = 16
) -> list[RawOutput]:
    """The model's raw anomaly maps, scores and reconstructions for decoded images, at their original size.

    Args:
        images: HxW or HxWx3 uint8 images of any size.
        spec: the card's input specification (resized or tiled).
        run: the model: normalised NCHW batch -> outputs by name.
        batch_size: windows per model call when tiling.
    """
    results = []
    if spec.resize == "tile":
        for image in images:
            prepared, geometry = prepare(image, spec)
            raw_map, score, recon = _tiled(prepared, spec, run, batch_size)
            pixels = None if recon is None else _map_back_image(_to_pixels(recon, spec), geometry)
            results.append(RawOutput(map_back(raw_map, geometry), score, pixels))
        return results
    batch, geometries = preprocess_batch(images, spec)
    if not len(batch):
        return []
    out = run(batch)
    for i, geometry in enumerate(geometries):
        recon = out.get(RECONSTRUCTION)
        pixels = None if recon is None else _map_back_image(_to_pixels(recon[i], spec), geometry)
        results.append(
            RawOutput(map_back(out[ANOMALY_MAP][i, 0].astype(np.float32), geometry), float(out[SCORE][i]), pixels)
        )
    return results


def predict_anomaly(
    card: ModelCard, images: Sequence[np.ndarray], sources: Sequence[str], run: RunOutputs, batch_size: int = 16
):
    """Predictions (score, verdict, anomaly map, mask, reconstruction) for decoded images; the
    Predictor's anomaly path."""
    t0 = time.perf_counter()
    results = [
        to_prediction(card, source, raw)
        for source, raw in zip(sources, raw_outputs(images, card.input, run, batch_size))
    ]
    share_time(results, t0)
    return results


def to_prediction(card: ModelCard, source: str, raw: RawOutput):
    """A Prediction from raw outputs: normalised score and map, verdict, cleaned mask, regions."""
    spec: AnomalySpec = card.anomaly
    post = card.postprocess or PostProcess(threshold=0.5, min_area=0, kernel=3)
    score = float(normalise(raw.score, spec.image_threshold, spec.image_scale))
    heat = normalise(raw.anomaly_map, spec.pixel_threshold, spec.pixel_scale)
    mask = clean_mask(heat >= spec.pixel_decision, post).astype(np.uint8)
    anomalous = score >= spec.decision
    normal = card.classes[0]
    extra = {
        "verdict": ANOMALY if anomalous else normal,
        "raw_score": round(raw.score, 6),
        "components": components(mask, heat, card.classes),
        "anomaly_area_pct": round(100.0 * float(mask.mean()), 4),
    }
    return AnomalyPrediction(
        source,
        ANOMALY,
        ANOMALY if anomalous else normal,
        score,
        {normal: round(1.0 - score, 6), ANOMALY: round(score, 6)},
        mask=mask,
        heatmap=heat,
        reconstruction=raw.reconstruction,
        extra=extra,
    )
