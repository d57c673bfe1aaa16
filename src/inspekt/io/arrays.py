"""In-memory images handed to the Python API: numpy arrays and Pillow images, checked and brought to the
HxW / HxWx3 uint8 form every model input starts from, with an error that says how to convert what cannot
be taken as it is (a float array may be 0..1 or 0..255: only its owner knows, so it is refused, not guessed).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from PIL import Image

from inspekt.errors import ConfigError
from inspekt.io._pixels import composite
from inspekt.io.decode import WHITE, from_pillow


def is_in_memory(item: Any) -> bool:
    """Whether ``item`` is an in-memory image (a numpy array or a Pillow image) rather than a file source."""
    return isinstance(item, (np.ndarray, Image.Image))


def as_image(item: np.ndarray | Image.Image, where: str) -> np.ndarray:
    """An HxW or HxWx3 uint8 array from an in-memory image.

    Taken as they are: HxW and HxWx3 uint8 arrays. Converted: HxWx1 (squeezed), HxWx4 RGBA (composited
    on white, as decoding does), bool (0 / 255), Pillow images of any mode the decoder reads (turned
    upright by their EXIF orientation, as a decoded file is).

    Args:
        item: the array or Pillow image.
        where: how to name it in an error (``images[3]``).

    Raises:
        ConfigError: an array that is not one image of 8-bit pixels, with the conversion to use.
    """
    if isinstance(item, Image.Image):
        return from_pillow(item, where)
    shape = "x".join(map(str, item.shape))
    if item.ndim == 4:
        raise ConfigError(f"{where}: a {shape} array is a batch; pass its images as a list: list(batch)")
    if item.ndim not in (2, 3) or (item.ndim == 3 and item.shape[2] not in (1, 3, 4)):
        raise ConfigError(f"{where}: a {shape} array is not an image; give HxW (grey) or HxWx3 (RGB) pixels")
    if item.size == 0:
        raise ConfigError(f"{where}: the {shape} array holds no pixels")
    if item.dtype == bool:
        item = item.astype(np.uint8) * 255
    if item.dtype != np.uint8:
        fix = (
            "(a * 255).round().astype(np.uint8) for 0..1 values, a.clip(0, 255).astype(np.uint8) for 0..255"
            if item.dtype.kind == "f"
            else "(a // 257).astype(np.uint8) for 16-bit values, a.astype(np.uint8) when they are 0..255"
        )
        raise ConfigError(f"{where}: a {item.dtype} array; images are uint8 (0..255): convert it, e.g. {fix}")
    if item.ndim == 3 and item.shape[2] == 1:
        return item[:, :, 0]
    if item.ndim == 3 and item.shape[2] == 4:
        return composite(np.ascontiguousarray(item), WHITE)
    return item
