"""Stratified, deterministic train/val/test splits written as a CSV (images are never copied).

Exact duplicates (same bytes) always land in the same split, so a split never leaks a test
image into training.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zlib
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

import numpy as np

from inspekt.data.dataset import Dataset, Sample, boxes_cell
from inspekt.errors import DatasetError
from inspekt.io import output_file
from inspekt.storage import relative_text


def _groups_by_content(samples: tuple[Sample, ...]) -> list[list[Sample]]:
    groups: dict[str, list[Sample]] = {}
    for s in samples:
        try:
            key = hashlib.sha256(s.path.read_bytes()).hexdigest()
        except OSError:
            key = str(s.path)  # unreadable: its own group; `data info` reports it
        groups.setdefault(key, []).append(s)
    return list(groups.values())


def _allocate(n: int, val: float, test: float) -> tuple[int, int]:
    n_test = int(round(n * test))
    n_val = int(round(n * val))
    while n_test + n_val >= n and n_test + n_val > 0:  # keep at least one group for training
        if n_val >= n_test and n_val:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test


def split_dataset(ds: Dataset, *, val: float = 0.2, test: float = 0.2, seed: int = 0) -> Dataset:
    """Assign train/val/test to every sample, stratified by label.

    Args:
        ds: the dataset; existing splits are replaced.
        val: fraction for validation.
        test: fraction for test.
        seed: the same seed always gives the same split.

    Returns:
        The dataset with ``split`` set on every sample.

    Raises:
        DatasetError: fractions outside [0, 1) or summing to 1 or more.
    """
    if not (0 <= val < 1 and 0 <= test < 1 and val + test < 1):
        raise DatasetError(f"--val {val} and --test {test} must each lie in [0, 1) and sum to less than 1")
    by_label: dict[str | None, list[list[Sample]]] = defaultdict(list)
    for group in _groups_by_content(ds.samples):
        by_label[group[0].label].append(group)
    assigned: dict[Path, str] = {}
    for label, groups in sorted(by_label.items(), key=lambda kv: str(kv[0])):
        # Seeded per label, so adding a class does not reshuffle the others.
        rng = np.random.default_rng([seed, zlib.crc32(str(label).encode())])
        order = rng.permutation(len(groups))
        n_val, n_test = _allocate(len(groups), val, test)
        for rank, index in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            for s in groups[index]:
                assigned[s.path] = split
    return replace(ds, samples=tuple(replace(s, split=assigned[s.path]) for s in ds.samples))


HEADER = ("path", "label", "mask", "split")
# a split of a detection dataset; boxes before split, unlike `data import`'s labels.csv (path,label,mask,split,
# boxes), which is someone's annotation and never taken for a split inspekt may replace
BOXES_HEADER = ("path", "label", "mask", "boxes", "split")


def _is_split_csv(path: Path) -> bool:
    """Whether ``path`` starts with a header ``write_split_csv`` writes (a split it may replace)."""
    try:
        with path.open("rb") as handle:
            first = handle.read(256).split(b"\n")[0]  # read(n): a remote file's readline takes no limit
    except OSError:
        return False
    return first.rstrip(b"\r\n") in (",".join(HEADER).encode(), ",".join(BOXES_HEADER).encode())


def split_target(out: str | Path, overwrite: bool = False) -> Path:
    """Where a split CSV may be written: any file but an earlier split CSV is kept unless ``overwrite``.

    Raises:
        InspektError: ``out`` is a folder or cannot be written; or it exists, is not a split CSV written
            by inspekt (an image, someone's table ...) and ``overwrite`` is False.
    """
    target = output_file(out, "split.csv", option="--out")
    if not overwrite and target.exists() and not _is_split_csv(target):
        raise DatasetError(
            f"--out {target} exists and is not a split CSV written by inspekt; choose another file "
            "(e.g. split.csv) or pass --overwrite to replace it"
        )
    return target


def write_split_csv(ds: Dataset, out: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``path,label,mask,split`` rows with paths relative to the CSV's folder, and a ``boxes``
    column when the dataset has boxes (``split_target`` says which existing files it replaces)."""
    out = split_target(out, overwrite)
    base = out.parent
    rel = lambda p: relative_text(p, base)  # noqa: E731
    with_boxes = any(s.boxes is not None for s in ds.samples)
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(BOXES_HEADER if with_boxes else HEADER)
    for s in ds.samples:
        path, label, mask, split = rel(s.path), s.label or "", rel(s.mask) if s.mask else "", s.split or ""
        writer.writerow([path, label, mask, boxes_cell(s.boxes), split] if with_boxes else [path, label, mask, split])
    out.write_bytes(text.getvalue().encode("utf-8"))  # one write, local or remote (out may be a URL)
    return out
