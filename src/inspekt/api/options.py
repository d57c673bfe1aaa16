"""Form options of the predict and drift endpoints, checked into library objects."""

from __future__ import annotations

import base64
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from inspekt import jsonio
from inspekt.api.problems import Problem
from inspekt.engine.predictor import Predictor
from inspekt.enhance import Pipeline
from inspekt.errors import ConfigError, did_you_mean
from inspekt.results import Prediction

INCLUDES = ("mask", "heatmap", "embedding")
PREDICT_FIELDS = ("threshold", "pixel_threshold", "min_area", "enhance", "topk", "include")
DRIFT_FIELDS = ("alpha", "permutations", "checks", "min_effect", "seed")


def _check_fields(fields: dict[str, str], known: tuple[str, ...]) -> None:
    for key in fields:
        if key == "files":  # curl -F files=image.png (no @) sends the name as text
            raise Problem(
                422,
                "invalid-form",
                "the field 'files' holds text, not a file; send each image as a "
                "file part with a file name (curl -F files=@image.png: the @ makes curl send the file)",
            )
        if key not in known:
            raise Problem(
                422,
                "invalid-form",
                f"unknown form field {key!r}; the fields are files, {', '.join(known)}.{did_you_mean(key, known)}",
            )


def _number(fields: dict[str, str], key: str, kind: type, low: float, high: float) -> Any:
    raw = fields.get(key, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:  # also refuses nan (every comparison with nan is False)
        raise Problem(
            422,
            "bad-parameter",
            f"{key}={raw!r} must be a whole number from {low:.0f} to {high:.0f}"
            if kind is int
            else f"{key}={raw!r} must be a number from {low:g} to {high:g}",
        )
    return value


def parse_enhance(spec: str | None) -> Pipeline | None:
    """An enhancement pipeline from a preset name, ``"step:key=value + step"`` or pipeline JSON text.

    Raises:
        Problem: 422 for a file name (the server never reads files named by a client) or a bad spec.
    """
    spec = (spec or "").strip()
    if not spec:
        return None
    try:
        if spec.startswith("{"):
            try:
                return Pipeline.from_dict(jsonio.loads(spec))
            except json.JSONDecodeError as exc:
                raise ConfigError(f"enhance: the pipeline JSON is invalid ({exc})") from None
        if spec.endswith(".json"):
            raise ConfigError(
                "enhance: send the pipeline's JSON text, not a file name (the server does not "
                "read files named by a request)"
            )
        return Pipeline.parse(spec)
    except ConfigError as exc:
        raise Problem(422, "bad-parameter", str(exc)) from None


@dataclass(frozen=True)
class PredictOptions:
    """What a predict request asked for."""

    predictor: Predictor
    enhance: Pipeline | None
    topk: int | None
    include: tuple[str, ...]
    key: tuple

    @classmethod
    def parse(cls, fields: dict[str, str], base: Predictor) -> PredictOptions:
        """Check the form fields against the model.

        Raises:
            Problem: 422 naming the field and its allowed values.
        """
        _check_fields(fields, PREDICT_FIELDS)
        threshold = _number(fields, "threshold", float, 0, 1)
        pixel = _number(fields, "pixel_threshold", float, 0, 1)
        min_area = _number(fields, "min_area", int, 0, 10**9)
        topk = _number(fields, "topk", int, 1, 10**6)
        include = tuple(w.strip() for w in fields.get("include", "").split(",") if w.strip())
        for word in include:
            if word not in INCLUDES:
                raise Problem(
                    422,
                    "bad-parameter",
                    f"include={word!r} is not one of {', '.join(INCLUDES)}.{did_you_mean(word, INCLUDES)}",
                )
        enhance = parse_enhance(fields.get("enhance"))
        predictor = base
        if threshold is not None or pixel is not None or min_area is not None:
            try:
                predictor = base.with_threshold(threshold, min_area, pixel)
            except ConfigError as exc:
                detail = str(exc)
                for option in ("--pixel-threshold", "--threshold", "--min-area"):  # the library speaks CLI options
                    detail = detail.replace(option, option[2:].replace("-", "_"))
                raise Problem(422, "bad-parameter", detail) from None
        key = (threshold, pixel, min_area)  # the service enhances before batching: any enhancement can share a batch
        return cls(predictor, enhance, topk, include, key)


def _png(array: np.ndarray) -> str:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render(prediction: Prediction, options: PredictOptions) -> dict[str, Any]:
    """A prediction as the CLI's ``predict --json`` prints it, plus the arrays asked for in ``include``
    (mask: PNG of class indices; heatmap: PNG of the 0-1 map scaled to 0-255; both base64)."""
    out = prediction.to_dict(options.topk)
    if "mask" in options.include and prediction.mask is not None:
        out["mask_png"] = _png(prediction.mask.astype(np.uint8))
    if "heatmap" in options.include and prediction.heatmap is not None:
        out["heatmap_png"] = _png(np.clip(np.rint(prediction.heatmap * 255), 0, 255).astype(np.uint8))
    if "embedding" in options.include and prediction.embedding is not None:
        out["embedding"] = [float(v) for v in prediction.embedding]
    return out
