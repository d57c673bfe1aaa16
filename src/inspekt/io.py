"""Reading and writing image files: the only place in inspekt where images are decoded.

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
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from inspekt import storage
from inspekt._pixels import (
    GREY_MODES,
    apply_orientation,
    composite,
    decode_16bit_colour,
    pillow_to_array,
    to_mode,
    truncates_16bit_colour,
)
from inspekt.errors import (
    ConfigError,
    DatasetError,
    ImageLoadError,
    ImageTooLargeError,
    InspektError,
    InspektWarning,
    did_you_mean,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "BatchReport",
    "SkippedFile",
    "image_size",
    "iter_images",
    "list_images",
    "load_image",
    "output_file",
    "save_image",
]

ImageSource = str | os.PathLike[str] | bytes | bytearray | memoryview | IO[bytes]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm", ".pbm"}
)
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "INSPEKT_MAX_PIXELS"

_MODES = ("RGB", "L", "keep")
# Pillow plugins allowed to parse pixel data; JPEG may come back as MPO (camera JPEGs).
_PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM")
_ALLOWED_FORMATS = frozenset(_PILLOW_FORMATS) | {"MPO"}
_ORIENTATION_TAG = 0x0112
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"%PDF-", "PDF"),
)
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


@dataclass(frozen=True)
class SkippedFile:
    """A source that ``iter_images`` could not load, and why."""

    path: str
    reason: str


@dataclass
class BatchReport:
    """Counts of what ``iter_images`` loaded and what it skipped."""

    loaded: int = 0
    skipped: list[SkippedFile] = field(default_factory=list)

    def summary(self) -> str:
        """Return a human-readable summary: one header line, then one line per skipped file.

        Returns:
            E.g. ``"loaded 98 images, skipped 2:\\n  a.png: empty file (0 bytes)\\n  ..."``.
        """
        plural = "" if self.loaded == 1 else "s"
        head = f"loaded {self.loaded} image{plural}, skipped {len(self.skipped)}"
        if not self.skipped:
            return head
        return head + ":\n" + "\n".join(f"  {s.path}: {s.reason}" for s in self.skipped)


def load_image(
    source: ImageSource,
    mode: str = "RGB",
    *,
    max_pixels: int | None = None,
    background: tuple[int, int, int] = (255, 255, 255),
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
            raise InspektError(f"{target}: cannot write image ({_one_line(exc)})") from exc
        raise
    return target


def output_file(path: str | os.PathLike[str] | storage.RemotePath, example: str) -> Path | storage.RemotePath:
    """``path`` as a file that can be written (its folder created), checked before any work is done.

    Args:
        path: where the output will go: a local path or an fsspec URL (``s3://bucket/report.json``).
        example: a file name to suggest when ``path`` is a folder (e.g. ``"split.csv"``).

    Returns:
        The target as a ``Path``, or a ``storage.RemotePath`` for URLs (write it with ``write_text``).

    Raises:
        InspektError: ``path`` is a folder, its folder cannot be created, it is not writable, or
            (URLs) its bucket does not exist or cannot be reached.
    """
    target = storage.as_path(path)
    if isinstance(target, storage.RemotePath):
        return _remote_output(target, example)
    if target.is_dir():
        raise InspektError(f"{target} is a folder; give a file name, e.g. {target / example}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InspektError(f"{target}: cannot create its folder ({exc.strerror or exc})") from None
    if not os.access(target.parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
        raise InspektError(f"{target}: no permission to write it; choose another path")
    return target


def _remote_output(target: storage.RemotePath, example: str) -> storage.RemotePath:
    if target.is_dir():
        raise InspektError(f"{target} is a folder; give a file name, e.g. {target / example}")
    storage.check_writable(target)
    return target


def list_images(folder: str | os.PathLike[str] | storage.RemotePath, recursive: bool = True) -> list[Path]:
    """List image files by suffix (nothing is decoded), skipping hidden files and folders.

    Args:
        folder: the folder to search: a local path or an fsspec URL (listed in one recursive request).
        recursive: also search sub-folders (symlinked folders are not followed).

    Returns:
        Sorted paths whose lower-case suffix is in ``IMAGE_EXTENSIONS`` (``storage.RemotePath`` for URLs).

    Raises:
        DatasetError: ``folder`` does not exist or is not a folder.
    """
    root = storage.as_path(folder)
    if not root.is_dir():
        reason = "not a folder" if root.exists() else "folder not found"
        if isinstance(root, storage.RemotePath) and reason != "not a folder":
            reason = root.missing_reason()
        raise DatasetError(f"{root}: {reason}")
    if isinstance(root, storage.RemotePath):
        return [
            p
            for p in storage.list_files(root)
            if p.suffix.lower() in IMAGE_EXTENSIONS and (recursive or p.parent == root)
        ]

    def unreadable(exc: OSError) -> None:
        message = f"{exc.filename}: cannot list folder ({exc.strerror})"
        warnings.warn(message, InspektWarning, stacklevel=2)

    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=unreadable):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")] if recursive else []
        found.extend(
            Path(dirpath, name)
            for name in filenames
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_EXTENSIONS
        )
    return sorted(found)


def iter_images(
    sources: Iterable[ImageSource],
    mode: str = "RGB",
    *,
    report: BatchReport | None = None,
    max_pixels: int | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """Load many images, skipping the ones that fail and recording why.

    Args:
        sources: paths, bytes or binary file objects.
        mode: as for ``load_image``.
        report: filled in as iteration goes; without one, a single ``InspektWarning``
            with the summary is emitted at the end if anything was skipped.
        max_pixels: as for ``load_image``.

    Returns:
        An iterator of ``(source as str, array)`` for each image that loaded.

    Raises:
        ValueError: ``mode`` or ``max_pixels`` is invalid (raised at once, not lazily).
        ConfigError: ``INSPEKT_MAX_PIXELS`` is invalid.
    """
    _check_mode(mode)
    limit = _resolve_max_pixels(max_pixels)
    return _iter_images(sources, mode, report, limit)


def _iter_images(
    sources: Iterable[ImageSource], mode: str, report: BatchReport | None, limit: int
) -> Iterator[tuple[str, np.ndarray]]:
    tally = report if report is not None else BatchReport()
    for source in storage.read_ahead(sources):  # remote files arrive as named bytes, fetched in parallel
        label = _describe(source)
        try:
            array = load_image(source, mode, max_pixels=limit)
        except ImageLoadError as exc:
            message = str(exc)
            prefix = f"{label}: "
            reason = message[len(prefix) :] if message.startswith(prefix) else message
            tally.skipped.append(SkippedFile(label, reason))
            continue
        tally.loaded += 1
        yield label, array
    if report is None and tally.skipped:
        warnings.warn(tally.summary(), InspektWarning, stacklevel=2)


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


def _one_line(value: object) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= 200 else text[:197] + "..."


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
        with _open_path(label, Path(os.fsdecode(source))) as handle:
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
        reason = _one_line(getattr(exc, "strerror", None) or exc)
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
        raise ImageLoadError(f"{label}: cannot read stream ({_one_line(exc)})") from exc
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
            reason = f"{type(exc).__name__}: {_one_line(exc)}"
            raise ImageLoadError(f"{label}: corrupt or truncated image data ({reason})") from exc


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
        img = Image.open(stream, formats=_PILLOW_FORMATS)
    except UnidentifiedImageError as exc:
        raise ImageLoadError(f"{label}: {_unidentified_reason(stream)}") from exc
    if img.format not in _ALLOWED_FORMATS:
        img.close()
        raise ImageLoadError(f"{label}: {_unsupported(str(img.format))}")
    return img


def _unsupported(fmt: str) -> str:
    return f"unsupported format {fmt} (supported: {', '.join(sorted(_ALLOWED_FORMATS))})"


def _unidentified_reason(stream: IO[bytes]) -> str:
    stream.seek(0)
    head = stream.read(64)
    fmt = next((name for magic, name in _MAGIC if head.startswith(magic)), None)
    if fmt is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt = "WEBP"
    if fmt is None and re.match(rb"P[1-6fF]\s", head):
        fmt = "PPM"
    if fmt in _ALLOWED_FORMATS:
        detail = _plugin_error(stream, fmt)
        return f"corrupt or truncated image data ({fmt} header could not be parsed{detail})"
    if fmt is None and head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1"):
        fmt = "HEIF"
    if fmt is None:
        fmt = _any_pillow_format(stream)
    if fmt is not None:
        return _unsupported(fmt)
    if head.lstrip()[:1] == b"<":
        return "not an image file (unrecognised content; it looks like HTML/XML)"
    return "not an image file (unrecognised content)"


def _plugin_error(stream: IO[bytes], fmt: str) -> str:
    # Image.open hides why the plugin refused the header; ask the plugin directly.
    factory = Image.OPEN.get(fmt, (None, None))[0]
    if factory is None:
        return ""
    stream.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # diagnosis only; the error below is the news
            factory(stream, "").close()
    except Exception as exc:  # any refusal is the reason we want to show
        return f": {type(exc).__name__}: {_one_line(exc)}"
    return ""


def _any_pillow_format(stream: IO[bytes]) -> str | None:
    # Only to name the format in the message; these plugins never decode pixels here.
    stream.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(stream) as other:
                return str(other.format)
    except Exception:  # any failure means "not something Pillow knows"
        return None


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
        message = f"{label}: unreadable EXIF ({_one_line(exc)}); orientation ignored"
        warnings.warn(message, InspektWarning, stacklevel=3)
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


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
