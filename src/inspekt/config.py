"""Configuration: defaults, then a YAML file, then command-line options and ``key=value``
overrides, validated with pydantic; the effective config is saved into every run.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from inspekt.errors import ConfigError, did_you_mean

C = TypeVar("C", bound=BaseModel)


def config_error(exc: ValidationError, cls: type[BaseModel], what: str = "config") -> ConfigError:
    """A pydantic ``ValidationError`` as a one-line ``ConfigError`` about its first error: an unknown key
    with a did-you-mean, or the key at fault, pydantic's reason and the value given.

    Args:
        exc: the error pydantic raised while validating ``cls``.
        cls: the model validated (its fields are the did-you-mean choices).
        what: what a key belongs to in the message ("config", or a settings class's name).
    """
    errors = exc.errors()
    err = errors[0]
    key = ".".join(str(p) for p in err["loc"])
    if err["type"] == "extra_forbidden":
        head, _, rest = key.partition(".")
        if rest and "dict" in str(cls.model_fields[head].annotation if head in cls.model_fields else ""):
            return ConfigError(  # a command-line override (model_params.width=4) given as one key
                f"unknown {what} key {key!r}: nest it, {head}={{{rest!r}: ...}} in Python or {head}: {{{rest}: ...}} "
                f"in YAML ({key}=VALUE is the command line's form)"
            )
        hint = did_you_mean(str(err["loc"][-1]), cls.model_fields)
        return ConfigError(f"unknown {what} key {key!r}.{hint}")
    shown = f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], dict) else ""
    field = err["loc"][:1]
    alternatives = [e for e in errors if e["loc"][:1] == field and len(e["loc"]) > 1 and _union_tag(e["loc"][1])]
    if len(alternatives) > 1:  # a union (e.g. "auto" or a number): its member tags are no keys; say every choice
        allowed = " or ".join(
            e["msg"].removeprefix("Input should be ") + "".join(f" (at {p!r})" for p in e["loc"][2:])
            for e in alternatives
        )
        return ConfigError(f"{what} key {field[0]!r} should be {allowed}{shown}")
    return ConfigError(f"{what} key {key!r}: {err['msg']}{shown}")


def _union_tag(part: object) -> bool:
    """Whether a pydantic error location part names a union member (``literal['auto']``, ``float``,
    ``constrained-float``, ``dict[str,float]``) rather than a key."""
    return isinstance(part, str) and (part in ("float", "int", "str", "bool") or "[" in part or "-" in part)


class Settings(BaseModel):
    """Base of the settings classes (``DriftConfig``, ``MonitorConfig``, ``ServeSettings`` ...): frozen,
    keyword-only, no unknown keys, and a bad key or value raises a one-line ``ConfigError`` (see
    ``config_error``), not a pydantic ``ValidationError``. Checks across fields go in a
    ``@model_validator(mode="after")`` that raises ``ConfigError`` (not a ``ValueError``, so pydantic lets
    it through unchanged)."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)  # NaN / inf: refused
    _kind: ClassVar[str] = ""  # how messages name these settings (default: the class name)

    def __init__(self, /, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as exc:
            raise config_error(exc, type(self), type(self)._kind or type(self).__name__) from None


class TrainConfig(Settings):
    """Everything a training run needs; every key can be set by YAML or ``key=value`` (``build_config``)."""

    _kind: ClassVar[str] = "config"

    task: str = Field(description="a task of the registry (inspekt.tasks): classify, segment, anomaly")
    data: str = Field(description="dataset folder or CSV")
    model: str = Field("tiny_cnn", description="registered model name (see `inspekt models`), or timm/<name>")
    model_params: dict[str, Any] = Field(default_factory=dict, description="extra architecture parameters")
    pretrained: str | None = Field(None, description="starting weights: a .safetensors/.pth file, or 'timm'")
    epochs: int = Field(30, ge=1, description="maximum epochs (anomaly: default, each method's own)")
    imgsz: int = Field(128, ge=16, le=4096, description="input side in pixels (segment, anomaly: a multiple of 32)")
    batch: int = Field(32, ge=1, description="batch size")
    lr: float = Field(2e-3, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.01, ge=0)
    scheduler: Literal["cosine", "onecycle"] = "cosine"
    warmup_epochs: float = Field(1.0, ge=0, description="linear warm-up before the cosine decay")
    loss: Literal["auto", "ce", "bce", "focal", "dice_bce", "tversky"] = Field(
        "auto",
        description="classify: ce, bce or focal (auto: ce); segment: dice_bce, focal or tversky (auto: dice_bce)",
    )
    focal_gamma: float = Field(2.0, ge=0)
    tversky_beta: float = Field(0.7, gt=0, lt=1, description="segment, loss tversky: weight of false negatives")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    class_weights: Literal["none", "auto"] | dict[str, float] = Field(
        "none", description="none or auto (inverse frequency; segment: inverse square-root pixel frequency)"
    )
    sampler: Literal["auto", "shuffle", "balanced"] = Field(
        "auto",
        description="balanced oversamples rare classes (segment: images with and without defects equally "
        "often); auto: balanced when the training classes are over 10:1 imbalanced and class_weights is none",
    )
    augment: str = Field("default", description="none, light, default, strong or an albumentations YAML file")
    flips: Literal["none", "horizontal", "vertical", "both"] = Field("both", description="flips the domain allows")
    metric: Literal["auto", "macro_f1", "accuracy", "balanced_accuracy", "roc_auc", "iou", "dice", "val_loss"] = Field(
        "auto",
        description="validation metric for best checkpoint and early stopping (auto: roc_auc for "
        "binary classifiers, macro_f1 for others, iou for segmentation)",
    )
    patience: int = Field(10, ge=1, description="epochs without improvement before stopping")
    val: float = Field(0.2, gt=0, lt=1, description="validation fraction carved when the data has no val split")
    channels: Literal["auto", 1, 3] = "auto"
    resize: Literal["auto", "stretch", "letterbox", "crop", "tile"] = Field(
        "auto",
        description="auto: stretch; tile when images average over 3x imgsz per side (segment) or 2x (detect): "
        "train on crops, predict on overlapping windows",
    )
    scale: float = Field(1.0, gt=0, le=4, description="segment, resize tile: scale images by this before tiling")
    overlap: float = Field(0.25, ge=0, le=0.75, description="segment, resize tile: overlap of prediction windows")
    defect_crops: float = Field(
        0.5,
        ge=0,
        le=1,
        description="segment, resize tile: share of training crops "
        "centred on a defect (the rest are random, mostly negatives)",
    )
    masks: Literal["binary", "folder", "values"] = Field(
        "binary", description="segment: how masks name classes (see inspekt.data.masks)"
    )
    mask_threshold: int = Field(128, ge=1, le=255, description="segment: mask value from which a pixel is a defect")
    mask_values: dict[int, str] = Field(default_factory=dict, description="segment, masks values: {value: class}")
    threshold: Literal["auto"] | Annotated[float, Field(ge=0, le=1)] = Field(
        0.5,
        description="segment: defect probability threshold stored in the card (auto: the one with the best "
        "validation defect IoU); detect: box score threshold (auto: the best validation box F1)",
    )
    min_area: Literal["auto"] | int = Field(
        "auto", description="segment: smallest kept region in pixels (auto: from the training masks)"
    )
    kernel: int = Field(3, ge=0, le=63, description="segment: morphological clean-up kernel in pixels (0 = off)")
    normal: str | None = Field(
        None,
        description="anomaly: the class of normal images (default: good, ok, normal, "
        "free, pass or nominal, whichever the data has)",
    )
    groups: str = Field(
        "auto",
        description="anomaly: normal variants (poses) for template_ratio: auto (sub-folders "
        "of the normal class, else the model clusters), none, or a CSV with path and group columns",
    )
    groups_column: str = Field("group", description="anomaly, groups CSV: the column naming each image's variant")
    calibration: Literal["auto", "quantile", "sigma", "f1"] = Field(
        "auto",
        description="anomaly threshold: f1 (best F1 on anomalous validation images), quantile of normal "
        "validation scores, or mean + sigma * std (auto: f1 when anomalous validation images exist, else quantile)",
    )
    quantile: float = Field(
        0.995,
        gt=0.5,
        lt=1,
        description="anomaly, calibration quantile: share of normal validation images below the threshold",
    )
    sigma: float = Field(3.0, gt=0, description="anomaly, calibration sigma: threshold = mean + sigma * std")
    clahe: float = Field(0.0, ge=0, le=40, description="CLAHE clip limit (0 = off), part of the card's preprocessing")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    amp: bool = Field(True, description="mixed precision on CUDA (CPU training stays float32)")
    cache_mb: int = Field(4096, ge=0, description="RAM for decoded, resized images; the rest is decoded each epoch")
    deterministic: bool = True
    seed: int = Field(0, ge=0, description="random seed")
    threads: int | None = Field(None, ge=1)
    out: str = Field("runs", description="runs root folder (a local path or an fsspec URL)")
    name: str = Field("exp", description="run name (exp, then exp2, ... when taken)")
    exist_ok: bool = Field(False, description="reuse the run folder if it exists")


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """Turn ``["epochs=5", "model_params.width=8"]`` into a nested dict (values parsed as YAML).

    Raises:
        ConfigError: an item without ``=``.
    """
    result: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {pair!r} is not key=value (e.g. epochs=5)")
        value = load_yaml(raw, f"override {pair!r}") if raw.strip() else ""
        node = result
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return result


def load_yaml(text: str, where: str) -> Any:
    """Plain YAML (``safe_load``: no tags that build Python objects), as a ``ConfigError`` naming
    ``where`` when it is malformed or holds such a tag (``!!python/object...``)."""
    try:
        return yaml.safe_load(text)
    except yaml.constructor.ConstructorError as exc:
        found = re.search(r"'tag:yaml\.org,2002:([^']+)'", str(exc.problem))
        tag = f"!!{found.group(1)}" if found else str(exc.problem).rsplit(" ", 1)[-1]
        raise ConfigError(
            f"{where}: the YAML tag {tag} is not allowed (inspekt reads plain YAML: tags that build Python "
            "objects could run code); write plain values instead"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not readable YAML ({str(exc).splitlines()[0]})") from None


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML config file as a mapping (``load_yaml``'s rules; an empty file is ``{}``).

    Raises:
        ConfigError: a missing or unreadable file, malformed YAML, a Python tag, or not a mapping.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable YAML file ({exc})") from None
    loaded = load_yaml(text, str(path))
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the config must be a mapping of key: value")
    return loaded


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def build_config(
    cls: type[C],
    *,
    file: str | Path | None = None,
    options: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
    base: BaseModel | None = None,
) -> C:
    """Build a validated config: class defaults < ``base`` < YAML file < options < ``key=value`` overrides.

    Args:
        cls: the config model, e.g. ``TrainConfig``.
        base: a config whose given keys (``model_fields_set``) start the merge, e.g. ``train(cfg, epochs=1)``.
        file: optional YAML file.
        options: values from command-line flags (None values are ignored).
        overrides: ``key=value`` strings.

    Returns:
        The validated config.

    Raises:
        ConfigError: unknown key (with a did-you-mean), invalid value, unreadable file.
    """
    raw = base.model_dump(exclude_unset=True) if base is not None else {}
    raw = _merge(raw, read_yaml(file)) if file else raw
    raw = _merge(raw, {k: v for k, v in (options or {}).items() if v is not None})
    raw = _merge(raw, parse_overrides(overrides or []))
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        raise config_error(exc, cls) from None


def save_config(config: BaseModel, path: str | Path, *, exclude: set[str] | None = None) -> Path:
    """Write the effective config as YAML (without the ``exclude`` keys, e.g. defaults a method decides)."""
    path = Path(path)
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude=exclude), sort_keys=False), encoding="utf-8")
    return path
