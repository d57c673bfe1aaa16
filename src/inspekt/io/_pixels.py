"""Pixel conversion behind ``inspekt.io.load_image``: decoded pixels in, uint8 arrays out.

Pure functions on Pillow images, encoded bytes already in memory, and numpy arrays; no
files or streams are touched here. ``inspekt.io.decode`` does the opening, guarding and error
reporting around them.
"""

from __future__ import annotations

import warnings

import numpy as np
from PIL import Image

from inspekt.errors import ImageLoadError, InspektWarning

GREY_MODES = frozenset({"1", "L", "LA", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_HIGH_DEPTH_MODES = frozenset({"I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_COLOUR_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr", "HSV"})
_ALPHA_MODES = frozenset({"LA", "PA", "RGBA", "RGBa"})


# --- 16-bit colour, which Pillow truncates ---------------------------------------------------


def truncates_16bit_colour(img: Image.Image) -> bool:
    """Whether Pillow will drop the low byte of this (not yet loaded) PNG/TIFF's colour."""
    if img.format not in ("PNG", "TIFF") or img.mode not in ("RGB", "RGBA", "LA"):
        return False
    for tile in img.tile:
        args = tile[3]
        rawmode = args[0] if isinstance(args, tuple) and args else args
        if isinstance(rawmode, str) and ";16" in rawmode:
            return True
    return False


def decode_16bit_colour(data: bytes, size: tuple[int, int]) -> np.ndarray | None:
    """Re-decode a 16-bit colour PNG/TIFF with OpenCV, which keeps all 16 bits.

    Args:
        data: the whole encoded file.
        size: ``(width, height)`` as Pillow read it from the header.

    Returns:
        HxWx3 or HxWx4 uint8 (RGB order), or None when OpenCV cannot give a matching
        16-bit colour image (the caller then falls back to Pillow's 8 bits).
    """
    import cv2  # deferred: only this rare path needs it

    try:
        decoded = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    except cv2.error:
        return None
    width, height = size
    if decoded is None or decoded.dtype != np.uint16 or decoded.shape[:2] != (height, width):
        return None
    if decoded.ndim != 3 or decoded.shape[2] not in (3, 4):
        return None
    order = [2, 1, 0] if decoded.shape[2] == 3 else [2, 1, 0, 3]
    return scale_16bit(decoded[..., order])


# --- Pillow image to array ---------------------------------------------------------------------


def pillow_to_array(img: Image.Image, label: str) -> np.ndarray:
    """Return HxW, HxWx3 or HxWx4 (alpha still to composite) uint8 from a loaded image."""
    if img.mode in _HIGH_DEPTH_MODES:
        return _high_depth_to_uint8(img, label)
    if img.mode not in _COLOUR_MODES:
        raise ImageLoadError(f"{label}: unsupported pixel mode {img.mode}")
    keyed = img.mode in ("1", "L", "P", "RGB") and "transparency" in img.info  # tRNS colour key
    if img.mode in _ALPHA_MODES or keyed:
        return np.array(img.convert("RGBA"))
    if img.mode in ("1", "L"):
        return np.array(img.convert("L"))
    return np.array(img.convert("RGB"))


def scale_16bit(values: np.ndarray) -> np.ndarray:
    """Scale 0..65535 to 0..255 as ``round(v / 257)``."""
    # round(v / 257) maps 0..65535 exactly onto 0..255; (v + 128) // 257 is that rounding.
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _high_depth_to_uint8(img: Image.Image, label: str) -> np.ndarray:
    values = np.array(img)
    if img.mode == "F":
        return _float_to_uint8(values.astype(np.float64), label)
    if values.dtype.kind == "i":  # mode "I" is signed; negative values carry no light
        values = np.clip(values, 0, None)
    peak = int(values.max())
    if peak <= 65535:
        return scale_16bit(values)
    return np.rint(values * (255.0 / peak)).astype(np.uint8)


def _float_to_uint8(values: np.ndarray, label: str) -> np.ndarray:
    values = np.where(np.isfinite(values), values, 0.0)
    low, high = float(values.min()), float(values.max())
    if low >= 0.0 and high <= 1.0:
        return np.rint(values * 255.0).astype(np.uint8)
    # stacklevel 5: here, _high_depth_to_uint8, pillow_to_array, load_image, its caller.
    warnings.warn(
        f"{label}: float image with values in [{low:g}, {high:g}], outside [0, 1]; min-max normalised to 0-255",
        InspektWarning,
        stacklevel=5,
    )
    if high == low:
        return np.zeros(values.shape, np.uint8)
    return np.rint((values - low) * (255.0 / (high - low))).astype(np.uint8)


# --- post-processing -----------------------------------------------------------------------


def composite(rgba: np.ndarray, background: tuple[int, int, int]) -> np.ndarray:
    """Composite HxWx4 uint8 over an RGB ``background``; returns HxWx3 uint8."""
    alpha = rgba[..., 3:4].astype(np.uint16)
    rgb = rgba[..., :3].astype(np.uint16)
    under = np.asarray(background, np.uint16)
    # Max 255 * 255 + 127 fits uint16; +127 rounds the division by 255.
    return ((rgb * alpha + under * (255 - alpha) + 127) // 255).astype(np.uint8)


def apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an HxW or HxWxC array; returns it C-contiguous."""
    # Same transforms as PIL.ImageOps.exif_transpose, done on the array so that the
    # OpenCV path gets them too.
    if orientation in (5, 6, 7, 8):
        array = array.swapaxes(0, 1)
        orientation = {5: 1, 6: 2, 7: 3, 8: 4}[orientation]
    if orientation in (2, 3):
        array = array[:, ::-1]
    if orientation in (3, 4):
        array = array[::-1]
    return np.ascontiguousarray(array)


def to_mode(array: np.ndarray, mode: str, grey_source: bool) -> np.ndarray:
    """Convert HxW / HxWx3 uint8 to ``load_image``'s ``mode`` ("RGB", "L" or "keep")."""
    if array.ndim == 2:
        out = np.repeat(array[:, :, None], 3, axis=2) if mode == "RGB" else array
    elif mode == "L" or (mode == "keep" and grey_source):
        out = np.array(Image.fromarray(array).convert("L"))
    else:
        out = array
    return np.ascontiguousarray(out, dtype=np.uint8)
