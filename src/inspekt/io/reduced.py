"""Decoding at a reduced "working" resolution, for statistics over many images (drift profiles).

Image statistics such as brightness, colour balance or the pixel histogram barely change when an
image is reduced by a power of two, and decoding dominates their cost. Baseline and progressive
JPEG files are decoded straight to 1/2, 1/4 or 1/8 size by libjpeg's DCT scaling (through
OpenCV), which skips most of the work; every other file goes through ``io.load_image`` (the
robust path, with its clear errors) and is then area-averaged by the same factor. The factor is
the largest of 1, 2, 4, 8 that keeps the shorter side at least ``min_side`` pixels, so images of
one size always get the same factor whatever their format.
"""

from __future__ import annotations

import os
import stat

import numpy as np

from inspekt.io._pixels import apply_orientation
from inspekt.io.decode import _check_size, _describe, _resolve_max_pixels, load_image

_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def reduction_factor(height: int, width: int, min_side: int) -> int:
    """The largest factor in (1, 2, 4, 8) that keeps ``min(height, width) / factor >= min_side``;
    ``min_side <= 0`` means full resolution (1)."""
    if min_side > 0:
        shorter = min(height, width)
        for factor in (8, 4, 2):
            if shorter >= min_side * factor:
                return factor
    return 1


def load_reduced(
    source: str | os.PathLike[str] | bytes, min_side: int = 64, max_pixels: int | None = None
) -> tuple[np.ndarray, tuple[int, int]]:
    """Decode an image at a reduced working resolution (see the module docstring).

    Args:
        source: a path or the encoded bytes.
        min_side: the reduced image's shorter side stays at least this long; 0 = full resolution.
        max_pixels: decompression-bomb guard, as for ``load_image``.

    Returns:
        ``(pixels, (height, width))``: HxW uint8 for greyscale files, HxWx3 RGB otherwise, and the
        full-resolution size as displayed.

    Raises:
        ImageLoadError: the file is missing, empty, corrupt, truncated or not an image.
    """
    data = bytes(source) if isinstance(source, (bytes, bytearray)) else _read_regular_file(source)
    header = _jpeg_header(data)
    if header is not None:
        height, width, channels, orientation = header
        limit = max_pixels if isinstance(max_pixels, int) and max_pixels > 0 else _resolve_max_pixels(max_pixels)
        if width * height > limit:
            _check_size(_describe(source), (width, height), limit)  # raises, naming the file
        pixels = _decode_jpeg(data, channels, reduction_factor(height, width, min_side))
        if pixels is not None:  # turned as load_image turns it; orientations 5-8 swap the sides
            return apply_orientation(pixels, orientation), ((width, height) if orientation >= 5 else (height, width))
    pixels = load_image(source, "keep", max_pixels=max_pixels)
    height, width = pixels.shape[:2]
    return _area_reduce(pixels, reduction_factor(height, width, min_side)), (height, width)


def _read_regular_file(path: str | os.PathLike[str]) -> bytes:
    """The bytes of a regular file; b"" for anything else (missing, a folder, a FIFO or device,
    unreadable), for which ``load_image`` then says what is wrong. Plain ``os`` calls: for the
    small files of a drift profile, Python's buffered file object costs as much as the read."""
    try:
        handle = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # opening a FIFO must not wait for a writer
    except (OSError, ValueError, TypeError):
        return b""
    try:
        info = os.fstat(handle)
        if not stat.S_ISREG(info.st_mode):
            return b""
        data = os.read(handle, info.st_size)
        if len(data) == info.st_size:
            return data
        parts = [data]  # one read returned less (very large files)
        while more := os.read(handle, 1 << 24):
            parts.append(more)
        return b"".join(parts)
    except OSError:
        return b""
    finally:
        os.close(handle)


def _jpeg_header(data: bytes) -> tuple[int, int, int, int] | None:
    """``(height, width, components, EXIF orientation)`` of a complete 8-bit JPEG with 1 or 3
    components, else None (other files, truncated files and unusual JPEGs take the robust path)."""
    if not data.startswith(b"\xff\xd8") or not data.rstrip(b"\x00").endswith(b"\xff\xd9"):
        return None
    i, end, orientation = 2, len(data) - 9, 1
    while i < end:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _SOF_MARKERS:
            precision, components = data[i + 4], data[i + 9]
            height, width = int.from_bytes(data[i + 5 : i + 7], "big"), int.from_bytes(data[i + 7 : i + 9], "big")
            ok = precision == 8 and components in (1, 3) and height > 0 and width > 0
            return (height, width, components, orientation) if ok else None
        if marker in (0xD9, 0xDA):  # end of image or start of scan before any frame header
            return None
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if marker == 0xE1 and data[i + 4 : i + 10] == b"Exif\x00\x00":
            orientation = _exif_orientation(data[i + 10 : i + 2 + length])
        i += 2 + length
    return None


def _exif_orientation(tiff: bytes) -> int:
    """The orientation tag (1-8) of an EXIF block's first image directory; 1 when absent or
    unreadable (as ``load_image`` treats broken EXIF)."""
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None or len(tiff) < 8:
        return 1
    start = int.from_bytes(tiff[4:8], order)
    count = int.from_bytes(tiff[start : start + 2], order)
    for entry in range(start + 2, min(start + 2 + 12 * count, len(tiff) - 11), 12):
        if int.from_bytes(tiff[entry : entry + 2], order) == 0x0112:
            value = int.from_bytes(tiff[entry + 8 : entry + 10], order)
            return value if 1 <= value <= 8 else 1
    return 1


_FLAGS: dict[tuple[int, int], int] = {}  # (components, factor) -> OpenCV imread flag, filled on first use


def _decode_jpeg(data: bytes, channels: int, factor: int) -> np.ndarray | None:
    import cv2

    if not _FLAGS:
        _FLAGS.update(
            {
                (1, 1): cv2.IMREAD_GRAYSCALE,
                (1, 2): cv2.IMREAD_REDUCED_GRAYSCALE_2,
                (1, 4): cv2.IMREAD_REDUCED_GRAYSCALE_4,
                (1, 8): cv2.IMREAD_REDUCED_GRAYSCALE_8,
                (3, 1): cv2.IMREAD_COLOR,
                (3, 2): cv2.IMREAD_REDUCED_COLOR_2,
                (3, 4): cv2.IMREAD_REDUCED_COLOR_4,
                (3, 8): cv2.IMREAD_REDUCED_COLOR_8,
            }
        )
    try:
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), _FLAGS[channels, factor] | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None
    if pixels is None:
        return None
    return pixels if channels == 1 else cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)


def _area_reduce(pixels: np.ndarray, factor: int) -> np.ndarray:
    if factor == 1:
        return pixels
    import cv2

    height, width = pixels.shape[:2]
    size = (-(-width // factor), -(-height // factor))  # ceil, as libjpeg's scaled output
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
