"""Writing images: atomically, locally or to an fsspec URL (output paths: ``inspekt.io.outputs``)."""

from __future__ import annotations

import contextlib
import io
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from inspekt import storage
from inspekt.errors import ImageLoadError, InspektError, did_you_mean, one_line
from inspekt.io.outputs import disk_full

_SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".bmp": "BMP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
    ".gif": "GIF",
    ".ppm": "PPM",
    ".pgm": "PPM",
}


# Inspection images must not lose detail silently: WebP is written lossless, JPEG at 95.
_SAVE_OPTIONS: dict[str, dict[str, Any]] = {"JPEG": {"quality": 95}, "WEBP": {"lossless": True}}


def save_image(path: str | os.PathLike[str] | storage.RemotePath, array: np.ndarray) -> Path | storage.RemotePath:
    """Write a uint8 array as an image file; the format comes from the suffix.

    Parent folders are created. The file is written under a hidden temporary name and
    then renamed, so a crash never leaves a truncated image behind. JPEG is written at
    quality 95, WebP lossless; GIF is palette-based and therefore lossy for colour.

    Args:
        path: where to write, a local path or an fsspec URL (``s3://...``; written in one request);
            the suffix picks the format (.png, .jpg, .tif, ...).
        array: HxW (grey), HxWx3 (RGB) or HxWx4 (RGBA) uint8.

    Returns:
        The path written, as a ``Path`` (a ``storage.RemotePath`` for URLs).

    Raises:
        ImageLoadError: the suffix is not a writable image format.
        ValueError: the array's dtype or shape cannot be stored in that format.
        InspektError: the file could not be written (permissions, disk full, ...).
    """
    target = storage.as_path(path)
    suffix = target.suffix.lower()
    fmt = _SAVE_FORMATS.get(suffix)
    if fmt is None:
        choices = sorted(_SAVE_FORMATS)
        raise ImageLoadError(
            f"{target}: cannot save with suffix {suffix or '(none)'!r} "
            f"(supported: {', '.join(choices)}).{did_you_mean(suffix, choices)}"
        )
    pixels = _check_savable(array, fmt, suffix)
    if isinstance(target, storage.RemotePath):
        # One PUT of the encoded bytes: object stores never show a half-written object.
        encoded = io.BytesIO()
        Image.fromarray(pixels).save(encoded, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))
        target.write_bytes(encoded.getvalue())
        return target
    temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(temporary, format=fmt, **_SAVE_OPTIONS.get(fmt, {}))
        os.replace(temporary, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise disk_full(exc, target) or InspektError(f"{target}: cannot write image ({one_line(exc)})") from exc
        raise
    return target


def _check_savable(array: Any, fmt: str, suffix: str) -> np.ndarray:
    if not isinstance(array, np.ndarray) or array.dtype != np.uint8:
        kind = array.dtype if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f"save_image needs a uint8 numpy array, not {kind}; e.g. np.clip(a, 0, 255).astype(np.uint8)")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))) or 0 in array.shape:
        raise ValueError(f"save_image needs an HxW, HxWx3 or HxWx4 array, not shape {array.shape}")
    if array.ndim == 3 and array.shape[2] == 4 and fmt in ("JPEG", "PPM"):
        raise ValueError(f"{suffix} cannot store an alpha channel; save as .png or pass array[..., :3]")
    if suffix == ".pgm" and array.ndim != 2:
        raise ValueError(".pgm holds greyscale only; pass an HxW array or save as .ppm")
    return np.ascontiguousarray(array)
