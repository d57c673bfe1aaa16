"""The one typed dataset every layout is read into: samples with path, label, mask and split."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from inspekt import storage
from inspekt.card import NORMAL_NAMES

SPLITS = ("train", "val", "test")
SPLIT_ALIASES = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
# Folder / class names that mean "normal" for anomaly detection.


@dataclass(frozen=True)
class FileProblem:
    """A file (or one entry of an annotation file) that could not be used as it is, and why."""

    path: str
    reason: str


@dataclass(frozen=True)
class Box:
    """One annotated object: its class and its box in pixels of the original image
    (``x0, y0`` the top-left corner, ``x1, y1`` the bottom-right one, exclusive)."""

    label: str
    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        """Box area in pixels (0 for a degenerate box)."""
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)


def boxes_cell(boxes: tuple[Box, ...] | None) -> str:
    """A sample's boxes as a CSV dataset's ``boxes`` cell (JSON ``[[label, x0, y0, x1, y1], ...]``):
    "" when not annotated, "[]" when annotated with none."""
    return "" if boxes is None else json.dumps([[b.label, b.x0, b.y0, b.x1, b.y1] for b in boxes])


@dataclass(frozen=True)
class Sample:
    """One image of a dataset; ``mask``, ``split`` and ``boxes`` are optional.

    ``boxes`` is None when the layout has no boxes for the image and ``()`` for an annotated image
    with no objects (a valid negative for detection).
    """

    path: Path
    label: str | None = None
    mask: Path | None = None
    split: str | None = None
    boxes: tuple[Box, ...] | None = None


@dataclass(frozen=True)
class Dataset:
    """A dataset read from one of the supported layouts.

    Attributes:
        root: the folder (or CSV file) it was read from.
        layout: "classes", "csv", "mvtec" or "segmentation".
        samples: every image, in a deterministic order.
        classes: sorted label names (empty when the layout has no labels).
        mask_layout: whether the layout expects a mask per image (so missing ones matter).
        problems: annotation entries that were skipped or clipped while reading (``data info`` lists them).
        corrections: a digest of the corrections applied (``inspekt.data.corrections``); empty when
            this is the dataset as its files say.
    """

    root: Path
    layout: str
    samples: tuple[Sample, ...]
    classes: tuple[str, ...]
    mask_layout: bool = False
    problems: tuple[FileProblem, ...] = ()
    corrections: str = ""

    @property
    def normal_class(self) -> str | None:
        """The class that means "normal" (good / ok / free ...), if any."""
        by_lower = {c.lower(): c for c in self.classes}
        return next((by_lower[n] for n in NORMAL_NAMES if n in by_lower), None)

    @property
    def n_masks(self) -> int:
        """Number of samples with a mask file."""
        return sum(s.mask is not None for s in self.samples)

    @property
    def splits(self) -> tuple[str, ...]:
        """The splits present, in train/val/test order."""
        present = {s.split for s in self.samples if s.split}
        return tuple(s for s in SPLITS if s in present)

    def counts(self) -> dict[str, dict[str, int]]:
        """Image counts per split ("all" when there are no splits), then per label."""
        table: dict[str, Counter] = {}
        for s in self.samples:
            table.setdefault(s.split or "all", Counter())[s.label or "(none)"] += 1
        return {split: dict(sorted(c.items())) for split, c in table.items()}

    def subset(self, split: str) -> Dataset:
        """Only the samples of one split."""
        return replace(self, samples=tuple(s for s in self.samples if s.split == split))

    def fingerprint(self) -> str:
        """A short hash of the sample paths, labels and file sizes, and of the corrections applied
        (recorded in model cards: a model trained on a corrected view is told apart)."""
        digest = hashlib.sha256()
        if self.corrections:
            digest.update(f"corrections|{self.corrections}\n".encode())
        for s in sorted(self.samples, key=lambda s: str(s.path)):
            size = s.path.stat().st_size if s.path.exists() else -1
            digest.update(f"{s.path.name}|{s.label}|{s.split}|{size}\n".encode())
        return digest.hexdigest()[:16]

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"Dataset({str(self.root)!r}, layout={self.layout}, images={len(self)}, classes={list(self.classes)})"


def image_key(path) -> str | None:
    """A short identity of an image file for "did the model see it": a hash of its bytes, so the same file
    listed by another folder, a CSV or a copy has the same key, and two images never share one (file names and
    sizes do: numbered BMPs of one camera). A remote file's is the hash of the bytes this process read from it
    (evaluation and training read them anyway; no second download); None when it was not read, or unreadable."""
    if isinstance(path, storage.RemotePath):
        return path.content_key()
    if not isinstance(path, Path):
        return None
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, lambda: hashlib.blake2b(digest_size=8)).hexdigest()
    except OSError:
        return None


def image_keys(paths) -> list[str] | None:
    """``image_key`` of each path, in order; None when one has none (remote or unreadable), so nothing is
    claimed about images that cannot be told apart."""
    keys = [image_key(path) for path in paths]
    return None if None in keys else keys
