"""Finding and reading many images: list a folder, iterate over sources skipping (and reporting) bad files."""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from inspekt import storage
from inspekt.errors import DatasetError, ImageLoadError, InspektWarning
from inspekt.io.decode import ImageSource, _check_mode, _describe, _resolve_max_pixels, load_image
from inspekt.results import BatchReport, SkippedFile

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".pgm", ".ppm", ".pbm"}
)


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
        folder = Path(dirpath)  # parsed once per folder: a child path is cheap, a full parse per file is not
        found.extend(
            folder / name
            for name in filenames
            if not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS
        )
    found.sort(key=lambda path: path.parts)  # Path order (by parts), without Path.__lt__ per comparison
    return found


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
