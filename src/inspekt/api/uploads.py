"""Reading uploads: multipart bodies held in memory (never written to disk), with size limits
enforced while the body streams in, then decoded by ``inspekt.io.load_image``.

Starlette's own form parser spools files over 1 MB to temporary files; the service promises that
uploads are not stored, so it parses multipart itself with python-multipart's streaming parser.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from inspekt.api.problems import Problem
from inspekt.deadline import Deadline
from inspekt.errors import ImageLoadError, ImageTooLargeError
from inspekt.io import image_size, load_image

FILES_FIELD = "files"
MAX_FIELD_BYTES = 64 * 1024  # a form value (threshold, enhance spec ...) is short text
MAX_FIELDS = 32


@dataclass
class Upload:
    """One uploaded file, in memory."""

    name: str
    data: bytearray = field(default_factory=bytearray)
    _pixels: int | None = field(default=None, repr=False)  # header_pixels, read once per request


@dataclass
class Form:
    """A parsed multipart body: text fields and uploaded files, in order."""

    fields: dict[str, str] = field(default_factory=dict)
    files: list[Upload] = field(default_factory=list)


def too_large(limit: int) -> Problem:
    """The 413 problem for a body over ``limit`` bytes."""
    return Problem(
        413,
        "upload-too-large",
        f"the request body is larger than the limit of {limit / 2**20:g} MB; "
        "send fewer or smaller images per request (the server sets the limit with --max-upload-mb)",
    )


class _Collector:
    """python-multipart callbacks that build a ``Form`` and enforce the per-part limits."""

    def __init__(self, max_files: int):
        self.form, self.max_files = Form(), max_files
        self._header, self._value, self._headers = b"", b"", {}
        self._part: Upload | None = None
        self._field: tuple[str, bytearray] | None = None

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self._begin,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_done,
            "on_part_data": self._data,
            "on_part_end": self._end,
        }

    def _begin(self) -> None:
        self._headers, self._part, self._field = {}, None, None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers[self._header.lower()] = self._value
        self._header, self._value = b"", b""

    def _headers_done(self) -> None:
        _, options = parse_options_header(self._headers.get(b"content-disposition", b""))
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" not in options:
            if len(self.form.fields) >= MAX_FIELDS:
                raise Problem(422, "invalid-form", f"more than {MAX_FIELDS} form fields; send only the documented ones")
            self._field = (name, bytearray())
            return
        if name != FILES_FIELD:
            raise Problem(
                422,
                "invalid-form",
                f"file sent in field {name!r}; send images in the field "
                f"{FILES_FIELD!r} (e.g. curl -F files=@image.png)",
            )
        if len(self.form.files) >= self.max_files:
            raise Problem(
                413,
                "too-many-files",
                f"more than {self.max_files} files in one request; split the batch "
                "(the server sets the limit with --max-files)",
            )
        filename = " ".join(options[b"filename"].decode("utf-8", "replace").split())[:200]
        self._part = Upload(filename or f"upload-{len(self.form.files) + 1}")

    def _data(self, data: bytes, start: int, end: int) -> None:
        if self._part is not None:
            self._part.data += data[start:end]
        elif self._field is not None:
            self._field[1].extend(data[start:end])
            if len(self._field[1]) > MAX_FIELD_BYTES:
                raise Problem(
                    413, "field-too-large", f"form field {self._field[0]!r} is longer than {MAX_FIELD_BYTES // 1024} KB"
                )

    def _end(self) -> None:
        if self._part is not None:
            self.form.files.append(self._part)
        elif self._field is not None:
            self.form.fields[self._field[0]] = self._field[1].decode("utf-8", "replace")


def _boundary(request: Request) -> bytes:
    kind, options = parse_options_header(request.headers.get("content-type", ""))
    if kind != b"multipart/form-data":
        raise Problem(
            415,
            "unsupported-media-type",
            f"send the images as multipart/form-data in the field {FILES_FIELD!r}, e.g. curl -F files=@image.png URL",
        )
    if not options.get(b"boundary"):
        raise Problem(
            400,
            "invalid-form",
            "the multipart Content-Type has no boundary; let your HTTP client build the multipart body",
        )
    return options[b"boundary"]


def _declared_length(request: Request, max_bytes: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise Problem(400, "invalid-request", f"Content-Length {declared!r} is not a number")
        if int(declared) > max_bytes:  # refuse before reading a byte of it
            raise too_large(max_bytes)


async def read_form(request: Request, *, max_bytes: int, max_files: int, timeout: float | None = None) -> Form:
    """Read a multipart body into memory, refusing it as soon as it passes ``max_bytes``.

    Args:
        request: the incoming request.
        max_bytes: the body size limit.
        max_files: the most files one request may carry.
        timeout: seconds the whole body may take to arrive (a client trickling bytes must not hold
            a connection and its buffer forever).

    Returns:
        The form's fields and files.

    Raises:
        Problem: 413 (too large / too many files), 415 (not multipart), 400 or 422 (malformed body),
            408 (the body did not arrive in time).
    """
    boundary = _boundary(request)
    _declared_length(request, max_bytes)
    collector = _Collector(max_files)
    parser = MultipartParser(boundary, collector.callbacks())
    received = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                received += len(chunk)
                if received > max_bytes:  # Content-Length can be absent (chunked) or wrong
                    raise too_large(max_bytes)
                parser.write(chunk)
        parser.finalize()
    except TimeoutError:
        raise Problem(
            408,
            "body-timeout",
            f"the request body did not arrive within {timeout:g} s ({received:,} bytes received); "
            "send it at once (the server sets the limit with --body-timeout)",
        ) from None
    except (FormParserError, ValueError) as exc:
        raise Problem(
            400, "invalid-form", f"the multipart body could not be parsed ({exc}); let your HTTP client build it"
        ) from None
    except ClientDisconnect:
        raise Problem(400, "client-disconnected", "the client closed the connection before the body ended") from None
    return collector.form


def decode(upload: Upload, max_pixels: int | None) -> np.ndarray:
    """Decode one upload (as ``load_image(mode="keep")``, the CLI's path).

    Raises:
        ImageLoadError: the message names the upload's file name.
    """
    try:
        return load_image(bytes(upload.data), mode="keep", max_pixels=max_pixels)
    except ImageLoadError as exc:
        reason = str(exc).split(": ", 1)[-1]  # drop the "<bytes, N B>" label: the file name says more
        raise type(exc)(f"{upload.name}: {reason}") from None  # ImageTooLargeError stays one (413)


def decode_all(
    uploads: list[Upload],
    max_pixels: int | None,
    *,
    budget: int | None = None,
    growth: float = 1.0,
    deadline: Deadline | None = None,
) -> tuple[list[tuple[str, np.ndarray]], list[dict]]:
    """Decode uploads, skipping the bad ones.

    Args:
        uploads: the request's files.
        max_pixels: pixels one image may have after enhancement (checked from its header).
        budget: pixels all of the request's images may have together after enhancement (from their
            headers, before any is decoded: many images each under ``max_pixels`` must not exhaust memory).
        growth: how much the request's enhancement enlarges an image's pixel count (``Pipeline.growth``).
        deadline: checked before each image (``Cancelled`` when it ran out or the client left).

    Returns:
        ``[(file name, array)]`` for the readable ones and ``[{"file", "status", "detail"}]`` for the
        others (413 for images over a pixel limit, 422 for anything unreadable).
    """
    decoded = []
    uploads, errors = within_budget(uploads, budget, growth)
    limit = None if max_pixels is None else max(1, int(max_pixels / growth))
    for i, upload in enumerate(uploads, 1):
        if deadline is not None:
            deadline.check(f"decoding image {i} of {len(uploads)}")
        try:
            decoded.append((upload.name, decode(upload, limit)))
        except ImageLoadError as exc:
            reason = str(exc).split(": ", 1)[-1]
            status = 413 if isinstance(exc, ImageTooLargeError) else 422
            if status == 413 and "max_pixels=" in reason:  # the library's remedy is the operator's, not the client's
                reason = reason.split("; ", 1)[0] + (
                    "; send a smaller image (the server sets the limit with --max-pixels)"
                )
            errors.append({"file": upload.name, "status": status, "detail": reason})
    return decoded, errors


def within_budget(uploads: list[Upload], budget: int | None, growth: float = 1.0) -> tuple[list[Upload], list[dict]]:
    """The uploads that fit the request's pixel budget (from their headers, in order), and a 413
    ``{"file", "status", "detail"}`` for each one past it.

    Args:
        uploads: the request's files.
        budget: pixels all images may have together (None: no budget).
        growth: how much enhancement enlarges each image's pixel count.
    """
    kept, errors, spent = [], [], 0.0
    for upload in uploads:
        pixels = header_pixels(upload) * growth
        if budget is not None and spent + pixels > budget:
            errors.append(
                {
                    "file": upload.name,
                    "status": 413,
                    "detail": f"the request's images exceed the server's "
                    f"budget of {budget:,} pixels per request (--max-request-pixels); send fewer or "
                    "smaller images per request",
                }
            )
            continue
        spent += pixels
        kept.append(upload)
    return kept, errors


def header_pixels(upload: Upload) -> int:
    """Width x height from the file header (0 when the header cannot be read: decoding says why).
    Read once: the request's charge and its decoding's budget both ask."""
    if upload._pixels is None:
        try:
            width, height = image_size(bytes(upload.data))
        except ImageLoadError:
            width = height = 0
        upload._pixels = width * height
    return upload._pixels
