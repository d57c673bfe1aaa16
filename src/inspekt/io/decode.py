"""Decoding one image: the only place in inspekt where images are decoded.

Every decode goes through Pillow, restricted to an allow-list of formats; OpenCV is used
only to recover full precision from 16-bit colour PNG/TIFF files, which Pillow reduces to
8 bit by dropping the low byte. Any problem with the data becomes an ``ImageLoadError``
whose one-line message is ``"<source>: <reason>"``, so a batch can skip the file and say
why at the end.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from inspekt import storage
from inspekt.errors import (
    ConfigError,
    ImageLoadError,
    ImageTooLargeError,
    InspektWarning,
    did_you_mean,
    one_line,
)
from inspekt.io._formats import ALLOWED_FORMATS, PILLOW_FORMATS, unidentified_reason, unsupported
from inspekt.io._pixels import (
    GREY_MODES,
    apply_orientation,
    composite,
    decode_16bit_colour,
    pillow_to_array,
    to_mode,
    truncates_16bit_colour,
)

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]

DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "INSPEKT_MAX_PIXELS"

_MODES = ("RGB", "L", "keep")
WHITE = (255, 255, 255)  # what transparent pixels are composited over unless told otherwise
_ORIENTATION_TAG = 0x0112


def load_image(
    source: ImageSource,
    mode: str = "RGB",
    *,
    max_pixels: int | None = None,
    background: tuple[int, int, int] = WHITE,
) -> np.ndarray:
    """Decode an image file into a uint8 array.

    EXIF orientation is applied. Transparent pixels are composited over ``background``.
    16-bit data is scaled over its full range (``round(v / 257)``); 32-bit integer data
    with values above 65535 is scaled by its maximum; float data in [0, 1] is multiplied
    by 255, any other float range is min-max normalised (with an ``InspektWarning``), and
    NaN / infinite values become 0. Only the first page of a multi-page TIFF (with an
    ``InspektWarning``) and the first frame of an animated GIF / WebP are read.

    Args:
        source: a path, an fsspec URL (``s3://bucket/a.png``, fetched in one request), the
            encoded bytes, or a binary file object (read to its end).
        mode: ``"RGB"`` for HxWx3, ``"L"`` for HxW luma, ``"keep"`` for HxW when the file
            is greyscale and HxWx3 otherwise.
        max_pixels: refuse images with more pixels than this (decompression-bomb guard).
            Default: the ``INSPEKT_MAX_PIXELS`` environment variable, else 100 million.
        background: RGB colour that transparent pixels are composited over.

    Returns:
        A C-contiguous uint8 array, HxWx3 or HxW.

    Raises:
        ImageLoadError: the source is missing, empty, corrupt, truncated, not an image,
            in an unsupported format, zero-sized or too large.
        ValueError: ``mode``, ``max_pixels`` or ``background`` is invalid.
        ConfigError: ``INSPEKT_MAX_PIXELS`` is not a positive whole number.
        TypeError: ``source`` is of an unsupported type.
    """
    _check_mode(mode)
    colour = _check_background(background)
    limit = _resolve_max_pixels(max_pixels)
    with _open_source(source) as (label, stream), _pillow_guard(label, limit):
        with _open_pillow(label, stream) as img:
            _check_size(label, img.size, limit)
            _warn_if_multipage(label, img)
            sixteen_bit_colour = truncates_16bit_colour(img)  # .tile is gone after load()
            img.load()
            orientation = _orientation(img, label)
            grey_source = img.mode in GREY_MODES
            array = None
            if sixteen_bit_colour:
                stream.seek(0)
                array = decode_16bit_colour(stream.read(), img.size)
            if array is None:
                array = pillow_to_array(img, label)
    return _finish(array, orientation, grey_source, mode, colour)


def from_pillow(img: Image.Image, label: str, mode: str = "keep") -> np.ndarray:
    """An opened Pillow image as ``load_image`` returns a decoded file: EXIF orientation applied, alpha
    composited over white, high-depth modes scaled, in ``mode`` (the Python API's PIL inputs)."""
    _check_mode(mode)
    return _finish(pillow_to_array(img, label), _orientation(img, label), img.mode in GREY_MODES, mode, WHITE)


def _finish(array: np.ndarray, orientation: int, grey_source: bool, mode: str, colour: tuple[int, int, int]):
    """The decoder's last steps, after the pixels are read: alpha, orientation, mode."""
    if array.ndim == 3 and array.shape[2] == 4:
        array = composite(array, colour)
    return to_mode(apply_orientation(array, orientation), mode, grey_source)


def image_size(source: ImageSource) -> tuple[int, int]:
    """Return ``(width, height)`` as displayed, reading only the file header.

    EXIF orientations 5-8 swap width and height, as ``load_image`` would. For PNG only an
    eXIf chunk before the pixel data is seen (where writers put it).

    Args:
        source: a path, the encoded bytes, or a binary file object.

    Returns:
        ``(width, height)`` in pixels.

    Raises:
        ImageLoadError: the source is missing, empty, not an image, in an unsupported
            format, zero-sized, or its header is corrupt.
        TypeError: ``source`` is of an unsupported type.
    """
    with _open_source(source) as (label, stream), _pillow_guard(label, None):
        with _open_pillow(label, stream) as img:
            width, height = img.size
            _check_size(label, img.size, None)
            orientation = _orientation(img, label, header_only=True)
    return (height, width) if orientation >= 5 else (width, height)


# --- argument checks ---------------------------------------------------------------------


def _check_mode(mode: str) -> None:
    if mode not in _MODES:
        # difflib is case-sensitive, and "rgb" for "RGB" is the most likely slip.
        word = str(mode)
        hints = (did_you_mean(w, _MODES) for w in (word, word.upper(), word.lower()))
        raise ValueError(
            f"mode must be one of {', '.join(repr(m) for m in _MODES)}, not {mode!r}."
            + next((hint for hint in hints if hint), "")
        )


def _check_background(background: Any) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in background)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not all(0 <= v <= 255 for v in values):
        raise ValueError(f"background must be an (R, G, B) tuple of 0-255 ints, not {background!r}")
    return values  # type: ignore[return-value]


def _resolve_max_pixels(max_pixels: int | None) -> int:
    # Read the environment at call time so tests and long-running services can change it.
    if max_pixels is None:
        raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_PIXELS
        try:
            value = int(raw)
        except ValueError:
            value = 0
        if value <= 0:
            raise ConfigError(f"{MAX_PIXELS_ENV}={raw!r} must be a positive whole number, e.g. 200000000")
        return value
    whole = isinstance(max_pixels, (int, np.integer)) and not isinstance(max_pixels, bool)
    if not whole or max_pixels <= 0:
        raise ValueError(f"max_pixels must be a positive int, not {max_pixels!r}")
    return int(max_pixels)


# --- opening the source ------------------------------------------------------------------


def _describe(source: object) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        size = source.nbytes if isinstance(source, memoryview) else len(source)
        return f"<bytes, {size} B>"
    if isinstance(source, storage.RemotePath):
        return str(source)
    if isinstance(source, (str, os.PathLike)):
        return os.fsdecode(source).replace("\n", "\\n")
    name = getattr(source, "name", None)
    return name.replace("\n", "\\n") if isinstance(name, str) else "<stream>"


@contextlib.contextmanager
def _open_source(source: ImageSource) -> Iterator[tuple[str, IO[bytes]]]:
    label = _describe(source)
    if storage.is_remote(source):
        data = _read_remote(label, source)
    elif isinstance(source, (str, os.PathLike)):
        with _open_path(label, storage.as_path(os.fsdecode(source))) as handle:  # as_path: "~/x" expanded
            yield label, handle
        return
    elif isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    elif hasattr(source, "read"):
        data = _read_stream(label, source)
    else:
        raise TypeError(f"source must be a path, bytes or a binary file object, not {type(source).__name__}")
    if not data:
        raise ImageLoadError(f"{label}: empty file (0 bytes)")
    yield label, io.BytesIO(data)


def _open_path(label: str, path: Path) -> IO[bytes]:
    if path.is_dir():
        raise ImageLoadError(f"{label}: is a directory; give an image file, not a folder")
    if path.exists() and not path.is_file():
        # A FIFO or device would block or never end.
        raise ImageLoadError(f"{label}: not a regular file")
    try:
        handle = open(path, "rb")
    except FileNotFoundError as exc:
        raise ImageLoadError(f"{label}: file not found") from exc
    except PermissionError as exc:
        raise ImageLoadError(f"{label}: permission denied") from exc
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        reason = one_line(getattr(exc, "strerror", None) or exc)
        raise ImageLoadError(f"{label}: cannot open file ({reason})") from exc
    if os.fstat(handle.fileno()).st_size == 0:
        handle.close()
        raise ImageLoadError(f"{label}: empty file (0 bytes)")
    return handle


def _read_remote(label: str, source: Any) -> bytes:
    # The object's bytes in one request: no local copy, and Pillow gets a seekable buffer.
    path = storage.as_path(source)
    try:
        return path.read_bytes()
    except IsADirectoryError:
        raise ImageLoadError(f"{label}: is a directory; give an image file, not a folder") from None
    except FileNotFoundError:
        reason = "is a directory; give an image file, not a folder" if path.is_dir() else path.missing_reason()
        raise ImageLoadError(f"{label}: {'file not found' if reason.startswith('no such file') else reason}") from None
    except storage.StorageError as exc:
        if "access denied" in str(exc):  # one unreadable object is skipped like an unreadable local file
            raise ImageLoadError(f"{label}: permission denied") from None
        raise


def _read_stream(label: str, stream: Any) -> bytes:
    # Read it all: Pillow needs to seek, and many streams (sockets, uploads) cannot.
    try:
        data = stream.read()
    except OSError as exc:
        raise ImageLoadError(f"{label}: cannot read stream ({one_line(exc)})") from exc
    if isinstance(data, str):
        raise ImageLoadError(f"{label}: stream is in text mode; open the file with 'rb'")
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ImageLoadError(f"{label}: stream.read() returned {type(data).__name__}, not bytes")
    return bytes(data)


# --- decoding ------------------------------------------------------------------------------


@contextlib.contextmanager
def _pillow_guard(label: str, limit: int | None) -> Iterator[None]:
    # Pillow's own bomb warning is redundant with our limit; silence it here only, and
    # leave the global Image.MAX_IMAGE_PIXELS alone (other code may rely on it).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            yield
        except ImageLoadError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageTooLargeError(f"{label}: {_pillow_bomb_reason(exc, limit)}") from exc
        except MemoryError as exc:
            raise ImageLoadError(f"{label}: not enough memory to decode the image") from exc
        except Exception as exc:  # plugins raise arbitrary types on hostile input
            raise ImageLoadError(
                f"{label}: corrupt or truncated image data ({one_line(exc)}); copy or export the file again"
            ) from exc


def _pillow_bomb_reason(exc: Exception, limit: int | None) -> str:
    found = re.search(r"\((\d+) pixels\)", str(exc))
    pixels = int(found.group(1)) if found else None
    if limit is not None and pixels is not None and pixels > limit:
        return _too_many_pixels(f"{pixels:,} pixels", limit)
    ceiling = 2 * (Image.MAX_IMAGE_PIXELS or 0)
    shown = f"{pixels:,}" if pixels is not None else "more"
    return (
        f"image has {shown} pixels, more than Pillow's hard limit of {ceiling:,} "
        "(2 x PIL.Image.MAX_IMAGE_PIXELS), which inspekt does not change"
    )


def _too_many_pixels(size: str, limit: int) -> str:
    return (
        f"image is {size}, more than the limit of {limit:,} pixels (decompression-bomb guard); "
        f"if the file is trusted, raise it with max_pixels= or {MAX_PIXELS_ENV}"
    )


def _open_pillow(label: str, stream: IO[bytes]) -> Image.Image:
    try:
        img = Image.open(stream, formats=PILLOW_FORMATS)
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{label}: {unidentified_reason(stream)}") from exc
    if img.format not in ALLOWED_FORMATS:
        img.close()
        raise ImageLoadError(f"{label}: {unsupported(str(img.format))}")
    return img


def _check_size(label: str, size: tuple[int, int], limit: int | None) -> None:
    width, height = size
    if width <= 0 or height <= 0:
        raise ImageLoadError(f"{label}: zero-sized image ({width} x {height})")
    if limit is not None and width * height > limit:
        shown = f"{width} x {height} = {width * height:,} pixels"
        raise ImageTooLargeError(f"{label}: {_too_many_pixels(shown, limit)}")


def _warn_if_multipage(label: str, img: Image.Image) -> None:
    if img.format != "TIFF":
        return
    pages = getattr(img, "n_frames", 1)
    if pages > 1:
        warnings.warn(
            f"{label}: multi-page TIFF with {pages} pages; only page 1 is used",
            InspektWarning,
            stacklevel=3,
        )


def _orientation(img: Image.Image, label: str, *, header_only: bool = False) -> int:
    if header_only and img.format == "PNG" and "exif" not in img.info:
        return 1  # PngImageFile.getexif() would decode the pixels to look further
    try:
        value = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception as exc:  # broken EXIF should not cost the user the pixels
        message = f"{label}: unreadable EXIF ({one_line(exc)}); orientation ignored"
        warnings.warn(message, InspektWarning, stacklevel=3)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1
