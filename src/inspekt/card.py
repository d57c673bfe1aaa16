"""The model card: everything about a model except its weights, and the single truth for
preprocessing (input size, channels, mean/std, resize policy).

Schema ``inspekt.card/v1``. A card is validated on load; every problem names the key and
how to fix it. Cards written by a newer inspekt (a higher schema version) are refused with
the advice to upgrade rather than half-read.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspekt import jsonio
from inspekt.errors import BundleError, did_you_mean

SCHEMA = "inspekt.card/v2"  # v2: the digests of model.onnx and weights.safetensors (v1 cards still load)
SCHEMA_VERSION = 2
NORMAL_NAMES = ("good", "ok", "normal", "free", "pass", "nominal")  # class names of normal (defect-free) images
EMBEDDING = "embedding"  # the optional graph output with a classifier's penultimate features


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # NaN / inf: refused


class InputSpec(_Strict):
    """How images become model inputs: the only place these facts live."""

    size: tuple[int, int] = Field(description="input height, width in pixels")
    channels: Literal[1, 3] = 3
    mean: tuple[float, ...] = (0.5, 0.5, 0.5)
    std: tuple[float, ...] = (0.25, 0.25, 0.25)
    resize: Literal["stretch", "letterbox", "crop", "tile"] = Field(
        "stretch",
        description="stretch, letterbox or crop the image to ``size``; or tile: scale it by ``scale`` "
        "and run the model on overlapping windows of ``size`` (segmentation of large images)",
    )
    clahe: float = Field(0.0, ge=0, le=40, description="CLAHE clip limit applied before resizing; 0 = off")
    scale: float = Field(1.0, gt=0, le=4, description="tile: factor applied to the image before tiling")
    overlap: float = Field(0.25, ge=0, le=0.75, description="tile: overlap between neighbouring windows (fraction)")

    @field_validator("size")
    @classmethod
    def _positive(cls, size: tuple[int, int]) -> tuple[int, int]:
        if min(size) < 8 or max(size) > 8192:
            raise ValueError(f"input size {size} must lie between 8 and 8192 pixels per side")
        return size

    @model_validator(mode="after")
    def _per_channel(self) -> InputSpec:
        for key in ("mean", "std"):
            if len(getattr(self, key)) != self.channels:
                raise ValueError(f"{key} needs {self.channels} value(s), one per channel")
        if min(self.std) <= 0:
            raise ValueError("std values must be > 0")
        return self


class PostProcess(_Strict):
    """How a segmentation probability map becomes a mask and components (original image pixels)."""

    threshold: float = Field(
        0.5, ge=0, le=1, description="defect probability (1 - background) at which a pixel is a defect"
    )
    min_area: int = Field(0, ge=0, description="components with fewer pixels are dropped (at the original size)")
    kernel: int = Field(3, ge=0, le=63, description="morphological open + close kernel in pixels; 0 = off")


class MaskSpec(_Strict):
    """How this segmentation model's training masks named classes (``inspekt.data.masks``), so that
    evaluation reads masks the same way."""

    mode: Literal["binary", "folder", "values"] = "binary"
    threshold: int = Field(128, ge=1, le=255, description="binary / folder: smallest mask value that is a defect")
    values: dict[str, str] = Field(default_factory=dict, description="values: {mask value: class}")


class AnomalySpec(_Strict):
    """How an anomaly model's raw outputs become scores and decisions.

    Raw image scores and map values are in the method's own units; both are mapped through an S-curve
    so that the calibrated threshold lands on 0.5 and the median normal value on 0.05:
    ``normalised = 0.5 + 0.5 z / (1 + |z|)``, ``z = (raw - threshold) / scale``
    (``inspekt.tasks.anomaly.predict.normalise``).
    Normalised scores are comparable across models and images; the raw ones are kept too.
    """

    image_threshold: float = Field(description="raw image score calibrated on validation (normalised to 0.5)")
    image_scale: float = Field(gt=0, description="raw score units per unit of z (from the spread of normal scores)")
    pixel_threshold: float = Field(description="raw anomaly-map value calibrated on validation (normalised to 0.5)")
    pixel_scale: float = Field(gt=0, description="raw map units per unit of z")
    decision: float = Field(0.5, ge=0, le=1, description="normalised score at which an image is anomalous")
    pixel_decision: float = Field(0.5, ge=0, le=1, description="normalised map value at which a pixel is anomalous")
    calibration: str = Field(
        "",
        description="how the thresholds were chosen (quantile of normal validation "
        "scores, mean + k sigma, or best F1 with anomalous validation images)",
    )


class DataInfo(_Strict):
    """What the model was trained on, to recognise the same data later."""

    fingerprint: str = ""
    source: str = ""
    n_samples: int = 0


class Sanity(_Strict):
    """Whether a model passed the checks its training ran on it (e.g. that it does not predict one
    class for every validation image). A model that failed is kept, but never becomes a default."""

    ok: bool = Field(description="false: the model failed a check and must not be picked by default")
    why: str = Field("", description="the checks it failed, in words")


class ModelCard(_Strict):
    """Metadata of a model bundle (see ``inspekt.bundle``)."""

    schema_: str = Field(SCHEMA, alias="schema")
    task: str = Field(pattern=r"^[a-z][a-z_]*$")  # a name in the task registry (inspekt.tasks), checked on use
    architecture: str
    params: dict[str, Any] = Field(default_factory=dict, description="architecture hyper-parameters")
    classes: tuple[str, ...]
    input: InputSpec
    thresholds: dict[str, float] = Field(
        default_factory=dict, description="binary classify: {positive class: probability at which it is predicted}"
    )
    postprocess: PostProcess | None = Field(None, description="segment: threshold, morphology, minimum area")
    masks: MaskSpec | None = Field(None, description="segment: how the training masks were read")
    anomaly: AnomalySpec | None = Field(None, description="anomaly: thresholds and score normalisation")
    notes: tuple[str, ...] = Field((), description="what a user must know about this model (e.g. random weights)")
    sanity: Sanity | None = Field(None, description="training's checks of the model (None: not checked)")
    precision: Literal["fp32", "int8"] = Field("fp32", description="numeric precision of model.onnx")
    outputs: tuple[str, ...] = ("logits",)
    data: DataInfo = Field(default_factory=DataInfo)
    metrics: dict[str, float] = Field(default_factory=dict)
    versions: dict[str, str] = Field(default_factory=dict)
    created_at: str = ""
    digests: dict[str, str] = Field(
        default_factory=dict, description="sha256 of model.onnx and weights.safetensors, checked when they are read"
    )
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, allow_inf_nan=False)

    @field_validator("classes")
    @classmethod
    def _classes(cls, classes: tuple[str, ...]) -> tuple[str, ...]:
        if not classes or len(set(classes)) != len(classes):
            raise ValueError("classes must be a non-empty list of distinct names")
        return classes

    @model_validator(mode="after")
    def _thresholds(self) -> ModelCard:
        # The rules every card keeps; each task adds its own (``inspekt.tasks.<task>.check_card``),
        # checked when a Predictor opens the bundle.
        for name, value in self.thresholds.items():
            if name not in self.classes:
                raise ValueError(f"thresholds key {name!r} is not one of the classes {list(self.classes)}")
            if not 0 <= value <= 1:
                raise ValueError(f"thresholds.{name} = {value} must be a probability in [0, 1]")
        return self

    def to_json(self) -> str:
        """The card as pretty JSON (the content of ``card.json``)."""
        return self.model_dump_json(by_alias=True, indent=2)


def sanity_failure(card: ModelCard, quote: Callable[[str], str] = str) -> str | None:
    """``"failed its training's sanity check: <why>"`` for a model that failed it, else None: one wording for
    every front (CLI, REST start-up, data issues, the workbench), each naming the model its own way; ``quote``
    escapes the reason for where it is shown (the workbench's markdown)."""
    if passed_sanity(card):
        return None
    return f"failed its training's sanity check: {quote(card.sanity.why or 'no reason kept')}"


def passed_sanity(card: ModelCard) -> bool:
    """Whether a model may be picked by default: it passed the checks its training ran on it (e.g. it
    does not predict one class for every validation image), or it was never checked (older cards,
    models without such checks)."""
    return card.sanity is None or card.sanity.ok


def positive_class(classes: tuple[str, ...] | list[str]) -> str:
    """The "defect" class of a binary classifier: the one that is not a normal name (ok, good, ...),
    else the second class."""
    normal = [c for c in classes if c.lower() in NORMAL_NAMES]
    return next(c for c in classes if c != normal[0]) if len(normal) == 1 else classes[1]


def library_versions() -> dict[str, str]:
    """Versions of the libraries a bundle depends on, recorded in every card."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("inspekt", "numpy", "torch", "onnx", "onnxruntime", "timm"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def now_iso() -> str:
    """Current UTC time as an ISO-8601 string (card ``created_at``)."""
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _check_schema(raw: dict, where: str) -> None:
    schema = raw.get("schema")
    if not isinstance(schema, str) or not schema.startswith("inspekt.card/v"):
        raise BundleError(f"{where}: not an inspekt model card (schema is {schema!r}, expected {SCHEMA!r})")
    try:
        version = int(schema.rsplit("/v", 1)[1])
    except ValueError:
        raise BundleError(f"{where}: unreadable card schema {schema!r}") from None
    if version > SCHEMA_VERSION:
        raise BundleError(
            f"{where}: card schema {schema} is newer than this inspekt understands ({SCHEMA}); "
            "upgrade inspekt (pip install -U inspekt) to load this model"
        )


def _first_problem(exc: ValidationError, where: str) -> BundleError:
    err = exc.errors()[0]
    key = ".".join(str(p) for p in err["loc"]) or "(card)"
    if err["type"] == "extra_forbidden":
        fields = list(ModelCard.model_fields) + ["schema"]
        hint = did_you_mean(str(err["loc"][-1]), fields)
        return BundleError(f"{where}: unknown card key {key!r}.{hint}")
    return BundleError(f"{where}: card key {key!r}: {err['msg']}")


def parse_card(text: str | bytes, where: str = "card.json") -> ModelCard:
    """Parse and validate a card from JSON text.

    Args:
        text: the content of ``card.json``.
        where: name used in error messages (the file or bundle path).

    Returns:
        The validated card.

    Raises:
        BundleError: invalid JSON, a foreign or newer schema, or an invalid key/value.
    """
    try:
        raw = jsonio.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{where}: card.json is not valid JSON ({exc})") from exc
    if not isinstance(raw, dict):
        raise BundleError(f"{where}: card.json must hold a JSON object")
    _check_schema(raw, where)
    try:
        return ModelCard.model_validate(raw)
    except ValidationError as exc:
        raise _first_problem(exc, where) from exc
