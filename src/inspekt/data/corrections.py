"""Corrections: a person's fixes to a dataset's labels and masks, kept as a new version of it.

The originals are never touched. Each fix is one row appended to ``corrections.csv`` (columns
``COLUMNS``); a corrected mask is a new PNG file beside it (0 background, 255 defect), never written
over. ``open_dataset`` reads the corrected view (the newest fix per image and field wins; excluded
images are dropped; the dataset's fingerprint changes) unless asked for the original.

Where the corrections live (``locate``):

- a folder dataset ``ROOT``: ``ROOT/.inspekt-corrections/`` (hidden: layout detection and image
  listing skip it, so it is never taken for a class folder or an image);
- a CSV dataset ``DIR/labels.csv``: ``DIR/.inspekt-corrections/labels.csv/``;
- when that folder cannot be written (a read-only dataset), in the
  workspace: ``WORKSPACE/corrections/<name>-<hash of the dataset's path>/`` (workspace: the
  argument, else ``$INSPEKT_WORKSPACE``); a file ``dataset.txt`` there names the dataset.

Datasets on remote storage (``s3://...``) are read as they are; correcting one is refused.

Rows: ``path`` is the image relative to the dataset (the CSV's folder for a CSV); ``field`` is
``label``, ``mask`` or ``exclude``; ``old`` / ``new`` the value before / after (a mask: its file,
relative to the dataset or absolute; exclude: ``true`` / ``false``; empty: none); ``action`` is
``set`` or ``undo`` (an undo takes back the newest fix of that field not yet taken back, so undoing
twice walks two fixes back); ``who`` the OS user or a given name; ``when`` UTC ISO time.
Recording the value a field already has writes nothing.
"""

from __future__ import annotations

import csv
import getpass
import hashlib
import io
import os
import stat
import warnings
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from inspekt import storage
from inspekt.data.dataset import Dataset, Sample
from inspekt.errors import DatasetError, InspektWarning

FOLDER = ".inspekt-corrections"
FILE = "corrections.csv"
COLUMNS = ("path", "field", "old", "new", "action", "who", "when", "note")
FIELDS = ("label", "mask", "exclude")
ACTIONS = ("set", "undo")
WORKSPACE_ENV = "INSPEKT_WORKSPACE"


@dataclass(frozen=True)
class Correction:
    """One row of ``corrections.csv``."""

    path: str
    field: str
    old: str
    new: str
    action: str = "set"
    who: str = ""
    when: str = ""
    note: str = ""


def _base(root: Path) -> Path:
    """The folder image paths are relative to: the dataset folder, or a CSV's folder."""
    return root.parent if root.suffix.lower() == ".csv" else root


def _beside(root: Path) -> Path:
    return root.parent / FOLDER / root.name if root.suffix.lower() == ".csv" else root / FOLDER


def _in_workspace(root: Path, workspace: str | os.PathLike | None) -> Path | None:
    workspace = workspace or os.environ.get(WORKSPACE_ENV)
    if not workspace:
        return None
    tag = hashlib.sha1(str(root).encode()).hexdigest()[:10]
    return Path(workspace) / "corrections" / f"{root.stem or 'data'}-{tag}"


def _writable(folder: Path) -> bool:
    """Whether ``folder`` exists writable, or can be created. A folder whose mode lets nobody write
    counts as read-only even for root, who could (a dataset made read-only on purpose, e.g. a shared
    mount, run as root in a container)."""
    probe = folder
    while not probe.exists():
        probe = probe.parent
    anyone = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
    return probe.is_dir() and bool(probe.stat().st_mode & anyone) and os.access(probe, os.W_OK | os.X_OK)


def locate(root: str | os.PathLike, workspace: str | os.PathLike | None = None) -> Path | None:
    """The folder holding a dataset's corrections: the one that already has a ``corrections.csv``
    (beside the dataset first, then the workspace), else where new ones would go (beside it when
    writable, else the workspace); None when neither is possible (read-only and no workspace)."""
    root = Path(root)
    candidates = [c for c in (_beside(root), _in_workspace(root, workspace)) if c is not None]
    existing = next((c for c in candidates if (c / FILE).is_file()), None)
    if existing is not None:
        return existing
    return next((c for c in candidates if _writable(c)), None)


def read_corrections(folder: Path) -> list[Correction]:
    """The rows of ``folder/corrections.csv`` in order (none when there is no file).

    Raises:
        DatasetError: the file is unreadable, lacks a column, or has an unknown field or action.
    """
    path = folder / FILE
    if not path.is_file():
        return []
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}; the header is {','.join(COLUMNS)}")
            rows = [(line, {c: (row.get(c) or "") for c in COLUMNS}) for line, row in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read corrections ({exc})") from exc
    for line, row in rows:
        if row["field"] not in FIELDS or row["action"] not in ACTIONS:
            raise DatasetError(
                f"{path}:{line}: field {row['field']!r} / action {row['action']!r}: fields are "
                f"{', '.join(FIELDS)} and actions {', '.join(ACTIONS)}; fix or delete the row"
            )
    return [Correction(**row) for _, row in rows]


def _stacks(rows: list[Correction]) -> dict[tuple[str, str], list[tuple[int, Correction]]]:
    """Per (path, field), the fixes in force with their row numbers: each set is pushed, each undo
    pops the newest."""
    stacks: dict[tuple[str, str], list[tuple[int, Correction]]] = {}
    for number, row in enumerate(rows):
        stack = stacks.setdefault((row.path, row.field), [])
        if row.action == "set":
            stack.append((number, row))
        elif stack:
            stack.pop()
    return stacks


def current(rows: list[Correction]) -> dict[tuple[str, str], str]:
    """The value each corrected (path, field) has after every set and undo, in order; a field whose
    fixes were all taken back is absent (the original value holds)."""
    return {key: stack[-1][1].new for key, stack in _stacks(rows).items() if stack}


def _truth(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


class Corrections:
    """The corrections of one dataset: read its state, record fixes, take them back.

    Args:
        root: the dataset folder or CSV file (``Dataset.root``).
        workspace: where to keep corrections when the dataset's folder cannot be written
            (default ``$INSPEKT_WORKSPACE``).
    """

    def __init__(self, root: str | os.PathLike, workspace: str | os.PathLike | None = None):
        if isinstance(storage.as_path(root), storage.RemotePath):
            raise DatasetError(
                f"{root}: corrections are kept for local datasets only; copy the dataset to this machine first"
            )
        self.root = Path(root)
        self.base = _base(self.root)
        self.folder = locate(self.root, workspace)

    @property
    def csv_path(self) -> Path | None:
        return None if self.folder is None else self.folder / FILE

    def rows(self) -> list[Correction]:
        return [] if self.folder is None else read_corrections(self.folder)

    def key(self, path: str | os.PathLike) -> str:
        """An image's ``path`` cell: relative to the dataset when inside it, else absolute."""
        path = Path(path)
        try:
            return path.relative_to(self.base).as_posix()
        except ValueError:
            return path.as_posix()

    def _file(self, value: str) -> Path | None:
        return None if not value else (Path(value) if Path(value).is_absolute() else self.base / value)

    def value(self, sample: Sample, field: str) -> str:
        """A field's value in the corrected view: the fix in force, else the sample's own value (so give
        the sample as its files say, ``open_dataset(..., original=True)``: once every fix of a field is
        undone, that is the value it has again)."""
        state = current(self.rows())
        key = (self.key(sample.path), field)
        if key in state:
            return state[key]
        if field == "label":
            return sample.label or ""
        if field == "mask":
            return self.key(sample.mask) if sample.mask else ""
        return "false"

    def set_label(self, sample: Sample, label: str, **who) -> Correction | None:
        """Record a new label for ``sample`` (None when it already has it)."""
        if not label.strip():
            raise DatasetError(f"{sample.path}: a label cannot be empty; mark the image excluded instead")
        return self._record(sample, "label", label.strip(), **who)

    def exclude(self, sample: Sample, excluded: bool = True, **who) -> Correction | None:
        """Mark ``sample`` excluded from the corrected view (or included again)."""
        return self._record(sample, "exclude", "true" if excluded else "false", **who)

    def set_mask(self, sample: Sample, mask: np.ndarray, **who) -> Correction | None:
        """Write ``mask`` (HxW, non-zero = defect) as a new PNG and record it as ``sample``'s mask."""
        from PIL import Image

        from inspekt.io import image_size

        mask = np.asarray(mask)
        width, height = image_size(sample.path)
        if mask.shape != (height, width):
            raise DatasetError(
                f"{sample.path}: the mask is {mask.shape} but the image is {height}x{width}; "
                "give one channel (HxW) at the image's size"
            )
        folder = self._writable_folder()
        stem = Path(self.key(sample.path)).with_suffix("")
        version = 1 + sum(1 for _ in (folder / "masks" / stem.parent).glob(f"{stem.name}.v*.png"))
        target = folder / "masks" / stem.parent / f"{stem.name}.v{version}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        buffer = io.BytesIO()
        Image.fromarray(np.where(mask > 0, 255, 0).astype(np.uint8)).save(buffer, format="PNG")
        target.write_bytes(buffer.getvalue())
        return self._record(sample, "mask", self.key(target), **who)

    def undo(self, sample: Sample, field: str | None = None, **who) -> Correction:
        """Take back the newest fix of ``sample``'s ``field`` (any field when None) not taken back yet.

        Raises:
            DatasetError: there is none.
        """
        key = self.key(sample.path)
        stacks = _stacks(self.rows())
        fields = FIELDS if field is None else (field,)
        in_force = [stacks[(key, f)][-1] for f in fields if stacks.get((key, f))]
        if not in_force:
            raise DatasetError(f"{key}: no {field or ''} correction to undo in {self.csv_path}".replace("no  ", "no "))
        undone = max(in_force, key=lambda pair: pair[0])[1]
        return self._append(Correction(key, undone.field, undone.new, undone.old, "undo", **self._who(**who)))

    def _record(self, sample: Sample, field: str, new: str, **who) -> Correction | None:
        old = self.value(sample, field)
        if old == new:
            return None
        return self._append(Correction(self.key(sample.path), field, old, new, "set", **self._who(**who)))

    @staticmethod
    def _who(who: str | None = None, note: str = "") -> dict[str, str]:
        try:
            user = who or getpass.getuser()
        except (KeyError, OSError):  # no name for this uid (containers)
            user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
        return {"who": user, "when": datetime.now(UTC).isoformat(timespec="seconds"), "note": note}

    def _writable_folder(self) -> Path:
        if self.folder is None or not _writable(self.folder):
            raise DatasetError(
                f"{self.root}: cannot keep corrections: the dataset's folder is read-only and no workspace "
                f"is set; give a workspace (inspekt app --workspace DIR, or ${WORKSPACE_ENV})"
            )
        return self.folder

    def _append(self, row: Correction) -> Correction:
        folder = self._writable_folder()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / FILE
        fresh = not path.is_file()
        if fresh and folder.parent.name == "corrections":  # in the workspace: say whose corrections they are
            (folder / "dataset.txt").write_text(f"{self.root}\n", encoding="utf-8")
        with path.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            if fresh:
                writer.writeheader()
            writer.writerow(row.__dict__)
        return row

    def apply(self, dataset: Dataset) -> Dataset:
        """``dataset`` with its corrections applied (unchanged when it has none)."""
        state = current(self.rows())
        if not state:
            return dataset
        samples, known = [], set()
        for sample in dataset.samples:
            key = self.key(sample.path)
            known.add(key)
            if _truth(state.get((key, "exclude"), "false")):
                continue
            if (key, "label") in state:
                sample = replace(sample, label=state[(key, "label")])
            if (key, "mask") in state:
                sample = replace(sample, mask=self._file(state[(key, "mask")]))
            samples.append(sample)
        stray = sorted({path for path, _ in state} - known)
        if stray:
            warnings.warn(
                f"{self.csv_path}: {len(stray)} corrected image(s) are not in the dataset (e.g. {stray[0]}); ignored",
                InspektWarning,
                stacklevel=3,
            )
        digest = hashlib.sha256(repr(sorted(state.items())).encode()).hexdigest()[:16]
        classes = tuple(sorted({s.label for s in samples if s.label is not None}))
        return replace(dataset, samples=tuple(samples), classes=classes, corrections=digest)


def apply_corrections(dataset: Dataset, workspace: str | os.PathLike | None = None) -> Dataset:
    """The corrected view of a dataset read from local files (remote datasets are returned as read)."""
    if isinstance(dataset.root, storage.RemotePath):
        return dataset
    return Corrections(dataset.root, workspace).apply(dataset)
