"""Why Pillow refused a file, in words a user can act on: the formats inspekt decodes, the format a
refused file really is (by its magic bytes), and the plugin's own reason."""

from __future__ import annotations

import re
import warnings
from typing import IO

from PIL import Image

from inspekt.errors import one_line

# Pillow plugins allowed to parse pixel data; JPEG may come back as MPO (camera JPEGs).
PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "TIFF", "WEBP", "GIF", "PPM")


ALLOWED_FORMATS = frozenset(PILLOW_FORMATS) | {"MPO"}


MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
    (b"%PDF-", "PDF"),
)


def unsupported(fmt: str) -> str:
    return f"unsupported format {fmt} (supported: {', '.join(sorted(ALLOWED_FORMATS))})"


def unidentified_reason(stream: IO[bytes]) -> str:
    stream.seek(0)
    head = stream.read(64)
    fmt = next((name for magic, name in MAGIC if head.startswith(magic)), None)
    if fmt is None and head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        fmt = "WEBP"
    if fmt is None and re.match(rb"P[1-6fF]\s", head):
        fmt = "PPM"
    if fmt in ALLOWED_FORMATS:
        detail = plugin_error(stream, fmt)
        return f"corrupt or truncated image data ({fmt} header could not be parsed{detail})"
    if fmt is None and head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1"):
        fmt = "HEIF"
    if fmt is None:
        fmt = any_pillow_format(stream)
    if fmt is not None:
        return unsupported(fmt)
    if head.lstrip()[:1] == b"<":
        return "not an image file (unrecognised content; it looks like HTML/XML)"
    return "not an image file (unrecognised content)"


def plugin_error(stream: IO[bytes], fmt: str) -> str:
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
        return f": {type(exc).__name__}: {one_line(exc)}"
    return ""


def any_pillow_format(stream: IO[bytes]) -> str | None:
    # Only to name the format in the message; these plugins never decode pixels here.
    stream.seek(0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(stream) as other:
                return str(other.format)
    except Exception:  # any failure means "not something Pillow knows"
        return None
