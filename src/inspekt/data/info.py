"""``inspekt data info``: what a dataset holds and what is wrong with it.

Every image is read once: its bytes are hashed (exact duplicates, train/test leakage) and
decoded (corrupt files, sizes, and a difference hash for near-duplicates: the same picture saved
again, resized or slightly re-exposed). Decoding runs in threads because Pillow releases the GIL.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from inspekt.data.box_stats import BoxStats, box_stats, mask_boxes
from inspekt.data.dataset import Box, Dataset, FileProblem, Sample
from inspekt.data.masks import BINARY_THRESHOLD, defect_pixels, read_mask
from inspekt.errors import DatasetError, ImageLoadError
from inspekt.io import load_image

NEAR_BITS = 4  # difference hashes (64 bits) at most this many bits apart: near-duplicates
FLAT = 2  # thumbnails whose grey levels span less than this have no picture to compare: no hash
IMBALANCE = 3.0  # largest / smallest class count from which `data info` warns


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
    n_images: int  # readable images (the corrupt files are in ``corrupt``)
    classes: list[str]
    tasks: list[str]
    counts: dict[str, dict[str, int]]
    sizes: SizeStats | None
    masks_found: int
    masks_missing: list[str]
    mask_problems: list[FileProblem] = field(default_factory=list)
    annotation_problems: list[FileProblem] = field(default_factory=list)
    corrupt: list[FileProblem] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    cross_split_duplicates: list[list[str]] = field(default_factory=list)
    near_duplicates: list[list[str]] = field(default_factory=list)
    label_conflicts: list[list[str]] = field(default_factory=list)  # identical files with different labels
    imbalance: dict | None = None
    boxes: BoxStats | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def _label_conflicts(ds: Dataset, groups: list[list[str]]) -> list[list[str]]:
    """The groups of identical files that carry different labels: one of them at least is wrong."""
    label = {str(s.path): s.label for s in ds.samples}
    return [group for group in groups if len({label.get(path) for path in group} - {None}) > 1]


def _reason(exc: ImageLoadError) -> str:
    return str(exc).split(": ", 1)[-1]


def dhash(image: np.ndarray) -> int | None:
    """64-bit difference hash: is each pixel of a 9x8 grey thumbnail brighter than its left neighbour
    (Krawetz's dHash); None for a flat image (nothing to compare)."""
    import cv2

    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    thumb = cv2.resize(grey, (9, 8), interpolation=cv2.INTER_AREA).astype(np.int16)
    if int(thumb.max()) - int(thumb.min()) < FLAT:
        return None
    bits = (thumb[:, 1:] > thumb[:, :-1]).ravel()
    return int(np.packbits(bits).view(">u8")[0])


def _read(sample: Sample) -> tuple[str | None, tuple[int, int] | None, str | None, int | None]:
    """sha256, (height, width), an error reason and the difference hash of one image file."""
    try:
        data = sample.path.read_bytes()
    except OSError as exc:
        return None, None, "file not found" if isinstance(exc, FileNotFoundError) else str(exc), None
    digest = hashlib.sha256(data).hexdigest()
    try:
        image = load_image(data, mode="keep")
    except ImageLoadError as exc:
        return digest, None, _reason(exc), None
    return digest, image.shape[:2], None, dhash(image)


def _near_groups(ds: Dataset, digests: list[str | None], hashes: list[int | None]) -> list[list[str]]:
    """Groups of images whose difference hashes are at most ``NEAR_BITS`` apart (linked transitively),
    leaving out byte-identical copies (reported as duplicates)."""
    index = [i for i, h in enumerate(hashes) if h is not None]
    codes = np.array([hashes[i] for i in index], dtype=np.uint64)
    parent = list(range(len(index)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for start in range(0, len(codes), 512):
        block = np.bitwise_count(codes[start : start + 512, None] ^ codes[None, :]) <= NEAR_BITS
        for a, b in zip(*np.nonzero(block)):
            a, b = int(a) + start, int(b)
            if a < b and digests[index[a]] != digests[index[b]]:
                parent[root(a)] = root(b)
    groups: dict[int, list[int]] = {}
    for i in range(len(index)):
        groups.setdefault(root(i), []).append(index[i])
    near = [g for g in groups.values() if len({digests[i] for i in g}) > 1]
    return [[str(ds.samples[i].path) for i in g] for g in near]


def _imbalance(counts: dict[str, dict[str, int]]) -> dict | None:
    """The largest and smallest class (all splits together) when they are ``IMBALANCE`` times apart or more."""
    totals: dict[str, int] = {}
    for split in counts.values():
        for label, n in split.items():
            totals[label] = totals.get(label, 0) + n
    if len(totals) < 2:
        return None
    (big, n_big), (small, n_small) = (
        max(totals.items(), key=lambda kv: kv[1]),
        min(totals.items(), key=lambda kv: kv[1]),
    )
    ratio = n_big / max(1, n_small)
    return (
        {"largest": big, "largest_n": n_big, "smallest": small, "smallest_n": n_small, "ratio": round(ratio, 2)}
        if ratio >= IMBALANCE
        else None
    )


def _check_mask(sample: Sample, shape: tuple[int, int] | None) -> tuple[str | None, tuple[Box, ...]]:
    """What is wrong with a sample's mask (unreadable, another size than its image, too faint to mark a
    defect) or None, and the boxes a detector reads from it; the mask is decoded once, for both."""
    try:
        raw = read_mask(sample.mask)
    except DatasetError as exc:
        return (_reason(exc.__cause__) if isinstance(exc.__cause__, ImageLoadError) else str(exc)), ()
    height, width = raw.shape
    if shape is not None and (height, width) != shape:
        return f"mask is {width}x{height} but its image is {shape[1]}x{shape[0]}", ()
    try:  # a faint mask would silently train as no defect
        defect = defect_pixels(raw, BINARY_THRESHOLD, "mask")
    except DatasetError as exc:
        return str(exc).removeprefix("mask: "), ()
    return None, mask_boxes(sample, defect)


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
        # masks are decoded in the pool too, once each: for their problems and the boxes they hold
        checked = list(
            pool.map(lambda s, r: _check_mask(s, r[1]) if s.mask is not None else (None, ()), ds.samples, results)
        )
    corrupt = [FileProblem(str(s.path), r[2]) for s, r in zip(ds.samples, results) if r[2]]
    mask_problems = [FileProblem(str(s.mask), problem) for s, (problem, _) in zip(ds.samples, checked) if problem]
    dupes, crossing = _duplicate_groups(ds, [r[0] for r in results])
    # images of the normal class (MVTec's good/) need no mask: listing them would bury a defect image's gap
    normal = ds.normal_class
    missing = [
        str(s.path) for s in ds.samples if ds.mask_layout and s.mask is None and (s.label != normal or not normal)
    ]
    near = _near_groups(ds, [r[0] for r in results], [r[3] for r in results])
    readable = replace(ds, samples=tuple(s for s, r in zip(ds.samples, results) if not r[2]))
    counts = readable.counts()  # what can train: the corrupt files are listed on their own
    return DatasetInfo(
        root=str(ds.root),
        layout=ds.layout,
        n_images=len(readable),
        classes=list(ds.classes),
        tasks=list(tasks),
        counts=counts,
        sizes=_size_stats([r[1] for r in results if r[1] is not None]),
        masks_found=ds.n_masks,
        masks_missing=missing,
        mask_problems=mask_problems,
        annotation_problems=list(ds.problems),
        corrupt=corrupt,
        duplicates=dupes,
        cross_split_duplicates=crossing,
        near_duplicates=near,
        label_conflicts=_label_conflicts(ds, dupes),  # identical bytes only: near-duplicates can be two parts
        imbalance=_imbalance(counts),
        boxes=box_stats(ds, [r[1] for r in results], [found for _, found in checked]),
        seconds=round(time.perf_counter() - start, 3),
    )
