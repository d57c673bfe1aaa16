"""Training-time augmentation recipes (albumentations), applied to the prepared uint8 image.

Augmentation runs after ``transforms.prepare`` (channels, CLAHE, resize), on the model-sized
image, so it is cheap and never changes what preprocessing means: the card stays the only
definition of preprocessing, and nothing here runs at prediction time.

Recipes: ``none``, ``light``, ``default``, ``strong``, or a YAML file written by
``albumentations.save(transform, path, data_format="yaml")``. Aggressive geometry, crops,
blur and dropout can erase small defects (a 3-pixel pore does not survive a 60 % crop or a
coarse dropout hole): prefer ``light`` when defects are tiny.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from inspekt.errors import ConfigError, did_you_mean

RECIPES = ("none", "light", "default", "strong")
FLIPS = ("none", "horizontal", "vertical", "both")


def _flips(flips: str) -> list:
    import albumentations as A

    chosen = []
    if flips in ("horizontal", "both"):
        chosen.append(A.HorizontalFlip(p=0.5))
    if flips in ("vertical", "both"):
        chosen.append(A.VerticalFlip(p=0.5))
    return chosen


def _recipe(name: str, size: tuple[int, int], flips: str) -> list:
    import albumentations as A
    import cv2

    reflect = cv2.BORDER_REFLECT_101
    if name == "light":
        return _flips(flips) + [
            A.Affine(rotate=(-5, 5), scale=(0.95, 1.05), border_mode=reflect, p=0.5),
            A.RandomBrightnessContrast(brightness_limit=0.1, contrast_limit=0.1, p=0.5),
        ]
    if name == "default":
        return _flips(flips) + [
            A.Affine(rotate=(-15, 15), scale=(0.85, 1.15), translate_percent=(-0.05, 0.05), border_mode=reflect, p=0.7),
            A.RandomResizedCrop(size=size, scale=(0.75, 1.0), ratio=(0.9, 1.1), p=0.3),
            A.GaussianBlur(blur_limit=(3, 3), p=0.1),
            A.RandomBrightnessContrast(brightness_limit=0.2, contrast_limit=0.2, p=0.5),
        ]
    return _flips(flips) + [  # strong
        A.Affine(
            rotate=(-30, 30),
            scale=(0.75, 1.25),
            translate_percent=(-0.1, 0.1),
            shear=(-8, 8),
            border_mode=reflect,
            p=0.8,
        ),
        A.RandomResizedCrop(size=size, scale=(0.6, 1.0), ratio=(0.8, 1.25), p=0.5),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.06))], p=0.3),
        A.RandomBrightnessContrast(brightness_limit=0.3, contrast_limit=0.3, p=0.7),
        A.RandomGamma(gamma_limit=(80, 120), p=0.3),
        A.CoarseDropout(num_holes_range=(1, 3), hole_height_range=(0.05, 0.12), hole_width_range=(0.05, 0.12), p=0.2),
    ]


BOX_VISIBILITY = 0.3  # a box cut to less than this share of its area by a crop or a shift is dropped


class Augmenter:
    """Callable ``image -> image`` (or ``image, mask -> image, mask``: geometric steps move the mask
    with nearest-neighbour sampling; or ``image, boxes=(K, 5) -> image, boxes`` for an augmenter built
    with ``boxes=True``: geometric steps move the boxes, x0 y0 x1 y1 class) for uint8 HxW or HxWx3
    arrays, seeded per epoch for exact resume."""

    def __init__(self, transform):
        self.transform = transform

    def reseed(self, seed: int) -> None:
        """Make the next calls reproducible (called at the start of every epoch)."""
        if self.transform is not None:
            self.transform.set_random_seed(seed)

    def __call__(self, image: np.ndarray, mask: np.ndarray | None = None, *, boxes: np.ndarray | None = None):
        if boxes is not None:
            return self._with_boxes(image, boxes)
        if self.transform is None:
            return image if mask is None else (image, mask)
        result = self.transform(image=image) if mask is None else self.transform(image=image, mask=mask)
        out = result["image"]
        if out.shape != image.shape:
            raise ConfigError(
                f"augmentation changed the image shape {image.shape} -> {out.shape}; "
                "give crops the model's input size (size: [imgsz, imgsz])"
            )
        return out if mask is None else (out, result["mask"])

    def _with_boxes(self, image: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.transform is None:
            return image, boxes
        result = self.transform(image=image, bboxes=boxes[:, :4], labels=boxes[:, 4])
        moved = np.asarray(result["bboxes"], dtype=np.float32).reshape(-1, 4)
        return result["image"], np.concatenate([moved, np.asarray(result["labels"], np.float32)[:, None]], axis=1)


def build_augmenter(
    recipe: str, size: tuple[int, int], *, flips: str = "both", seed: int = 0, boxes: bool = False
) -> Augmenter:
    """The augmentation for a recipe name or a YAML file.

    Args:
        recipe: ``none``, ``light``, ``default``, ``strong`` or the path of an albumentations YAML file.
        size: model input (height, width); crops return this size.
        flips: which flips the domain allows: none, horizontal, vertical or both.
        seed: initial seed (``Augmenter.reseed`` sets it per epoch).
        boxes: the augmenter moves boxes with the image (albumentations' bounding-box support; boxes
            cut to less than ``BOX_VISIBILITY`` of their area are dropped); it must then be given boxes.

    Raises:
        ConfigError: an unknown recipe, an unreadable YAML file, or an unknown ``flips`` value.
    """
    import albumentations as A

    if flips not in FLIPS:
        raise ConfigError(f"flips={flips!r} is not one of {', '.join(FLIPS)}")
    if recipe in RECIPES:
        if recipe == "none":
            return Augmenter(None)
        return Augmenter(A.Compose(_recipe(recipe, size, flips), seed=seed, **_box_params(boxes)))
    path = Path(recipe)
    if path.suffix.lower() not in (".yaml", ".yml") or not path.is_file():
        hint = did_you_mean(recipe, RECIPES)
        raise ConfigError(
            f"augment={recipe!r} is neither a recipe ({', '.join(RECIPES)}) nor an existing "
            f"albumentations .yaml file.{hint}"
        )
    try:
        transform = A.load(os.fspath(path), data_format="yaml")
    except Exception as exc:  # albumentations raises many types for a bad file
        detail = " ".join(str(exc).split())[:200]
        raise ConfigError(
            f"{path}: not an albumentations transform file ({detail}); write one with "
            "albumentations.save(transform, path, data_format='yaml')"
        ) from exc
    if boxes:  # a saved transform knows no boxes: the same steps, told to move them
        transform = A.Compose(list(transform.transforms), seed=seed, **_box_params(True))
    transform.set_random_seed(seed)
    return Augmenter(transform)


def _box_params(boxes: bool) -> dict:
    import albumentations as A

    if not boxes:
        return {}
    return {"bbox_params": A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=BOX_VISIBILITY)}
