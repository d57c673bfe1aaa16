"""``inspekt data info``: what a dataset holds and what is wrong with it.

Every image is read once: its bytes are hashed (exact duplicates, train/test leakage) and
decoded (corrupt files, sizes). Decoding runs in threads because Pillow releases the GIL.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from inspekt.data.dataset import Dataset, Sample
from inspekt.errors import ImageLoadError
from inspekt.io import image_size, load_image


@dataclass(frozen=True)
class FileProblem:
    """A file that could not be used, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class SizeStats:
    """Image width/height statistics in pixels."""

    width_min: int
    width_median: float
    width_max: int
    height_min: int
    height_median: float
    height_max: int


@dataclass
class DatasetInfo:
    """The report of ``describe``: numbers only, rendering lives in the CLI."""

    root: str
    layout: str
    n_images: int
    classes: list[str]
    tasks: list[str]
    counts: dict[str, dict[str, int]]
    sizes: SizeStats | None
    masks_found: int
    masks_missing: list[str]
    mask_problems: list[FileProblem] = field(default_factory=list)
    corrupt: list[FileProblem] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    cross_split_duplicates: list[list[str]] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def _reason(exc: ImageLoadError) -> str:
    return str(exc).split(": ", 1)[-1]


def _read(sample: Sample) -> tuple[str | None, tuple[int, int] | None, str | None]:
    """sha256, (height, width) and an error reason for one image file."""
    try:
        data = sample.path.read_bytes()
    except OSError as exc:
        return None, None, "file not found" if isinstance(exc, FileNotFoundError) else str(exc)
    digest = hashlib.sha256(data).hexdigest()
    try:
        return digest, load_image(data, mode="keep").shape[:2], None
    except ImageLoadError as exc:
        return digest, None, _reason(exc)


def _check_mask(sample: Sample, shape: tuple[int, int] | None) -> str | None:
    try:
        width, height = image_size(sample.mask)
    except ImageLoadError as exc:
        return _reason(exc)
    if shape is not None and (height, width) != shape:
        return f"mask is {width}x{height} but its image is {shape[1]}x{shape[0]}"
    return None


def _duplicate_groups(ds: Dataset, digests: list[str | None]) -> tuple[list[list[str]], list[list[str]]]:
    groups: dict[str, list[Sample]] = {}
    for sample, digest in zip(ds.samples, digests):
        if digest is not None:
            groups.setdefault(digest, []).append(sample)
    dupes = [g for g in groups.values() if len(g) > 1]
    crossing = [g for g in dupes if len({s.split for s in g}) > 1]
    as_paths = lambda gs: [[str(s.path) for s in g] for g in gs]  # noqa: E731
    return as_paths(dupes), as_paths(crossing)


def _size_stats(shapes: list[tuple[int, int]]) -> SizeStats | None:
    if not shapes:
        return None
    h, w = np.array(shapes).T
    return SizeStats(int(w.min()), float(np.median(w)), int(w.max()), int(h.min()), float(np.median(h)), int(h.max()))


def describe(
    ds: Dataset,
    *,
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
    tasks: Sequence[str] = (),
) -> DatasetInfo:
    """Read every image of a dataset and report counts, sizes, masks, corrupt files and duplicates.

    Args:
        ds: the dataset (see ``open_dataset``).
        workers: decoding threads (default: the CPU count).
        progress: called with the number of images done after each one.
        tasks: the tasks the dataset can train, to report (``inspekt.tasks.tasks_for``).

    Returns:
        The dataset report.
    """
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
        results = []
        for i, result in enumerate(pool.map(_read, ds.samples), start=1):
            results.append(result)
            if progress:
                progress(i)
    corrupt = [FileProblem(str(s.path), r[2]) for s, r in zip(ds.samples, results) if r[2]]
    mask_problems = []
    for sample, (_, shape, _) in zip(ds.samples, results):
        problem = _check_mask(sample, shape) if sample.mask is not None else None
        if problem:
            mask_problems.append(FileProblem(str(sample.mask), problem))
    dupes, crossing = _duplicate_groups(ds, [r[0] for r in results])
    missing = [str(s.path) for s in ds.samples if ds.mask_layout and s.mask is None]
    return DatasetInfo(
        root=str(ds.root),
        layout=ds.layout,
        n_images=len(ds),
        classes=list(ds.classes),
        tasks=list(tasks),
        counts=ds.counts(),
        sizes=_size_stats([r[1] for r in results if r[1] is not None]),
        masks_found=ds.n_masks,
        masks_missing=missing,
        mask_problems=mask_problems,
        corrupt=corrupt,
        duplicates=dupes,
        cross_split_duplicates=crossing,
        seconds=round(time.perf_counter() - start, 3),
    )
