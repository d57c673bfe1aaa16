"""Segmentation targets: how mask files become class-index maps.

Three documented ways to name the classes of a mask (config key ``masks``):

- ``binary`` (default): classes ``background, defect``; a pixel is a defect when its mask value
  is at least ``mask_threshold`` (128), so anti-aliased or JPEG masks still work; a mask saved as
  0 / 1 (one non-zero value) marks its non-zero pixels, and colour masks are read by their brightest
  channel (``defect_pixels``, ``read_mask``).
- ``folder``: the defect class is the image's folder / CSV label; classes are ``background``
  plus every label except the normal one (good / ok / free ...), whose images are all
  background. Mask pixels at or above ``mask_threshold`` take the image's class.
- ``values``: the mask's pixel values are class ids, mapped by ``mask_values`` (``{1: pore,
  2: scratch}``; 0 is always background). Left empty, every non-zero value found in the
  training masks becomes a class named ``class_<value>``.

An image without a mask file is a valid negative: all background.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspekt.card import MaskSpec, ModelCard
from inspekt.data.dataset import NORMAL_NAMES, Dataset, Sample
from inspekt.errors import ConfigError, DatasetError, ImageLoadError
from inspekt.io import load_image

MASK_MODES = ("binary", "folder", "values")
BACKGROUND = "background"


BINARY_THRESHOLD = 128  # the binary rule's default: mask values from it up are defect pixels


@dataclass(frozen=True)
class MaskRule:
    """Turns a sample's mask file into a class-index map (uint8, 0 = background)."""

    mode: str
    classes: tuple[str, ...]
    threshold: int = BINARY_THRESHOLD
    values: dict[int, int] = field(default_factory=dict)  # mask value -> class index ("values" mode)

    def spec(self) -> MaskSpec:
        """The rule as stored in a model card."""
        return MaskSpec(
            mode=self.mode, threshold=self.threshold, values={str(v): self.classes[i] for v, i in self.values.items()}
        )

    @classmethod
    def from_card(cls, card: ModelCard) -> MaskRule:
        """The rule a segmentation card was trained with (binary at 128 when the card does not say)."""
        spec = card.masks or MaskSpec()
        values = {int(v): card.classes.index(name) for v, name in spec.values.items() if name in card.classes}
        return cls(spec.mode, card.classes, spec.threshold, values)

    def target(self, sample: Sample, shape: tuple[int, int]) -> np.ndarray:
        """The class-index map of ``sample`` at the image's ``shape`` (H, W).

        Raises:
            DatasetError: an unreadable mask, a size that differs from the image's, or a mask
                value the rule does not know (the message names the file and the fix).
        """
        if sample.mask is None:
            return np.zeros(shape, dtype=np.uint8)
        raw = read_mask(sample.mask)
        if raw.shape != tuple(shape):
            raise DatasetError(
                f"{sample.mask}: mask is {raw.shape[1]}x{raw.shape[0]} but its image {sample.path.name} "
                f"is {shape[1]}x{shape[0]}; masks must have the image's size"
            )
        if self.mode == "binary":
            return defect_pixels(raw, self.threshold, sample.mask).astype(np.uint8)
        if self.mode == "folder":
            index = self.classes.index(sample.label) if sample.label in self.classes else 0
            return defect_pixels(raw, self.threshold, sample.mask).astype(np.uint8) * np.uint8(index)
        lookup = np.zeros(256, dtype=np.int16) - 1
        lookup[0] = 0
        for value, index in self.values.items():
            lookup[value] = index
        out = lookup[raw]
        if (out < 0).any():
            unknown = sorted(set(np.unique(raw[out < 0]).tolist()))
            raise DatasetError(
                f"{sample.mask}: mask value(s) {unknown[:5]} are not in mask_values "
                f"{ {v: self.classes[i] for v, i in self.values.items()} }; add them, e.g. "
                f"mask_values.{unknown[0]}=<class name>"
            )
        return out.astype(np.uint8)


def read_mask(path: str | Path) -> np.ndarray:
    """A mask file as HxW uint8; a colour mask takes each pixel's brightest channel (a red-on-black mask
    reads 255 where it is painted, not its grey level 76)."""
    try:
        pixels = load_image(path, mode="keep")
    except ImageLoadError as exc:
        raise DatasetError(f"unreadable mask: {exc}") from exc
    return pixels.max(axis=2) if pixels.ndim == 3 else pixels


def defect_pixels(raw: np.ndarray, threshold: int, where: object) -> np.ndarray:
    """A binary rule's defect pixels of a mask (``read_mask``): values at or above ``threshold``.

    A mask holding one non-zero value below the threshold is a label mask saved as 0/1 (or 0/k): its
    non-zero pixels are the defect. Several values all below the threshold (a faint or soft mask) would
    silently read as no defect, so they are refused.

    Raises:
        DatasetError: non-zero values that all lie below ``threshold`` and are not one label value.
    """
    defect = raw >= threshold
    if defect.any() or not raw.any():
        return defect
    values = np.unique(raw)
    if len(values) == 2:
        return raw > 0
    raise DatasetError(
        f"{where}: no mask value reaches mask_threshold={threshold} (values up to {int(values[-1])}), so the "
        f"mask would read as no defect; lower it (mask_threshold={max(1, int(values[-1]) // 2)}) or save "
        "the mask as 0 / 255"
    )


def _folder_classes(ds: Dataset) -> tuple[str, ...]:
    if any(s.label is None for s in ds.samples):
        raise ConfigError(
            f"masks=folder takes each image's class from its folder or CSV label, but {ds.root} has "
            "unlabelled images; use masks=binary or masks=values"
        )
    defects = sorted({s.label for s in ds.samples if s.label.lower() not in NORMAL_NAMES})
    if not defects:
        raise ConfigError(f"masks=folder: every class of {ds.root} is a normal one; use masks=binary")
    return (BACKGROUND, *defects)


def _found_values(masks: Iterable[Path]) -> list[int]:
    found: set[int] = set()
    for path in masks:
        found.update(np.unique(read_mask(path)).tolist())
    return sorted(found - {0})


def mask_rule(
    ds: Dataset,
    mode: str = "binary",
    *,
    threshold: int = BINARY_THRESHOLD,
    values: Mapping[int | str, str] | None = None,
) -> MaskRule:
    """The rule for a dataset: its classes and how mask pixels map to them.

    Args:
        ds: the dataset (its masks and labels).
        mode: ``binary``, ``folder`` or ``values`` (see the module doc).
        threshold: binary and folder modes: the smallest mask value that counts as defect.
        values: values mode: ``{mask value: class name}``; empty finds the values in the masks.

    Raises:
        ConfigError: an unknown mode, bad values, or a dataset that cannot use the mode.
        DatasetError: the dataset has no masks at all.
    """
    if mode not in MASK_MODES:
        raise ConfigError(f"masks={mode!r} is not one of {', '.join(MASK_MODES)}")
    if not ds.n_masks:
        raise DatasetError(
            f"{ds.root}: no mask files found, so there is nothing to segment; expected images/ + "
            "masks/, <stem>_mask.png beside each image, MVTec ground_truth/ or a CSV mask column"
        )
    if not 1 <= threshold <= 255:
        raise ConfigError(f"mask_threshold={threshold} must lie in 1..255")
    if mode == "binary":
        return MaskRule(mode, (BACKGROUND, "defect"), threshold)
    if mode == "folder":
        return MaskRule(mode, _folder_classes(ds), threshold)
    if values:
        try:
            mapping = {int(k): str(v) for k, v in values.items()}
        except (TypeError, ValueError):
            raise ConfigError(f"mask_values keys must be pixel values 1..255, got {list(values)}") from None
        if any(not 1 <= k <= 255 for k in mapping):
            raise ConfigError(f"mask_values keys must be pixel values 1..255 (0 is background), got {sorted(mapping)}")
    else:
        mapping = {v: f"class_{v}" for v in _found_values(s.mask for s in ds.samples if s.mask)}
        if not mapping:
            raise DatasetError(f"{ds.root}: every mask is empty (all 0), so there are no classes to learn")
    names = sorted(set(mapping.values()) - {BACKGROUND})
    classes = (BACKGROUND, *names)
    return MaskRule(mode, classes, threshold, {v: classes.index(n) for v, n in mapping.items()})
