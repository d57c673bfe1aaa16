"""Detect and read the supported dataset layouts into one ``Dataset``.

1. class folders   root/<class>/*, optionally under root/{train,val,test}/
2. CSV             path,label[,mask][,split]   (paths relative to the CSV)
3. MVTec           root/train/good, root/test/<type>, root/ground_truth/<type>/<stem>_mask.png
4. segmentation    root/images/** with mirrored root/masks/** (same relative path and stem,
                   any extension), or <stem>_mask.<ext> beside each image
5. annotations     a labelling tool's export (``inspekt.data.formats``): a COCO or Label Studio
                   .json, a CVAT .xml, a Pascal VOC root (JPEGImages/ + SegmentationClass/ or
                   Annotations/) or a YOLO root (images/ + labels/*.txt); masks are rasterised into
                   the cache, boxes become ``Sample.boxes``, bad entries go to ``Dataset.problems``

Detection is by structure, in the order MVTec, VOC, YOLO, segmentation, class folders (a folder
whose sub-folders give one class or none is read from its ``labels.csv`` when it has one); a CSV is
read when the path is a .csv file (an optional ``boxes`` column holds JSON ``[[label, x0, y0, x1,
y1], ...]``), an annotation format when the path is such a file. Ambiguous or empty layouts raise
with what was found.
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from inspekt import storage
from inspekt.data.corrections import apply_corrections
from inspekt.data.dataset import SPLIT_ALIASES, Box, Dataset, FileProblem, Sample
from inspekt.data.formats import detect_format, read_annotations
from inspekt.errors import DatasetError, did_you_mean
from inspekt.io import IMAGE_EXTENSIONS, list_images

EXPECTED = (
    "expected one of: class folders ROOT/<class>/*.png (optionally under ROOT/train|val|test/); "
    "MVTec ROOT/train/good + ROOT/test/<type>; ROOT/images/** with ROOT/masks/**; "
    "images with <stem>_mask.png beside them; a CSV file with columns path,label[,mask][,split][,boxes]; "
    "a COCO or Label Studio .json, a CVAT .xml, a VOC root (JPEGImages/ + SegmentationClass/ or Annotations/) "
    "or a YOLO root (images/ + labels/*.txt)"
)
MASK_SUFFIX = "_mask"
PATH_COLUMNS = ("path", "image", "file", "filename")
LABELS_CSV = "labels.csv"  # a folder's own annotation, read when its folders name no classes
ANNOTATION_COLUMNS = ("label", "mask", "boxes")  # a CSV with none of them annotates nothing


def _subdirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _split_name(name: str) -> str | None:
    return SPLIT_ALIASES.get(name.lower())


def _pair_beside_masks(files: list[Path]) -> list[tuple[Path, Path | None]]:
    """Separate ``<stem>_mask.<ext>`` files from images and attach them to their image."""
    keys = [os.path.splitext(str(f))[0] for f in files]  # folder + stem, as text: thousands of files
    present = set(keys)
    masks = {
        key[: -len(MASK_SUFFIX)]: f
        for key, f in zip(keys, files)
        if key.endswith(MASK_SUFFIX) and key[: -len(MASK_SUFFIX)] in present
    }
    mask_keys = {key + MASK_SUFFIX for key in masks}
    return [(f, masks.get(key)) for key, f in zip(keys, files) if key not in mask_keys]


def _mask_index(folder: Path) -> dict[tuple[str, str], Path]:
    """Masks under ``folder`` keyed by (relative dir, stem without a ``_mask`` suffix)."""
    index = {}
    for m in list_images(folder):
        stem = m.stem[: -len(MASK_SUFFIX)] if m.stem.endswith(MASK_SUFFIX) else m.stem
        index[(str(m.parent.relative_to(folder)), stem)] = m
    return index


def _dataset(
    root: Path, layout: str, samples: list[Sample], mask_layout: bool = False, masks: dict | None = None
) -> Dataset:
    """The dataset of ``samples``; ``masks`` (a mask index) names the mask files no image took as problems."""
    if not samples:
        raise DatasetError(f"{root}: no images found; {EXPECTED}")
    classes = tuple(sorted({s.label for s in samples if s.label is not None}))
    used = {s.mask for s in samples}
    unused = sorted(m for m in (masks or {}).values() if m not in used)
    problems = tuple(
        FileProblem(str(m), "no image of this name, so the mask is not used; check its name") for m in unused
    )
    return Dataset(root, layout, tuple(samples), classes, mask_layout, problems)


def read_mvtec(root: Path) -> Dataset | None:
    """MVTec AD style, or None when ``root`` is not one."""
    train, test = root / "train", root / "test"
    if not (train / "good").is_dir():
        return None
    if not test.is_dir() and (root / "ground_truth").is_dir():
        raise DatasetError(
            f"{root}: looks like an MVTec layout (train/good, ground_truth/) but has no test/ "
            "folder; add test/good and test/<defect type>/ images"
        )
    if not test.is_dir():
        return None
    if [d.name for d in _subdirs(train)] != ["good"]:
        return None  # several classes under train/: that is the class-folder layout with splits
    truth = root / "ground_truth"
    masks = _mask_index(truth) if truth.is_dir() else {}
    samples = [Sample(p, "good", None, "train") for p in list_images(train / "good")]
    for split_dir in (d for d in _subdirs(root) if _split_name(d.name) in ("val", "test")):
        for type_dir in _subdirs(split_dir):
            for p in list_images(type_dir):
                mask = masks.get((type_dir.name, p.stem))
                samples.append(Sample(p, type_dir.name, mask, _split_name(split_dir.name)))
    return _dataset(root, "mvtec", samples, mask_layout=bool(masks), masks=masks)


def _label_and_split(rel_parts: tuple[str, ...]) -> tuple[str | None, str | None]:
    """Label and split from the folders between a layout root and the image."""
    split = _split_name(rel_parts[0]) if rel_parts else None
    rest = rel_parts[1:] if split else rel_parts
    return (rest[0] if rest else None), split


def read_segmentation(root: Path) -> Dataset | None:
    """images/ + mirrored masks/ folders, or None when ``root`` has no such pair."""
    images, masks_dir = root / "images", root / "masks"
    if not images.is_dir() or not masks_dir.is_dir():
        return None
    masks = _mask_index(masks_dir)
    samples = []
    for p in list_images(images):
        rel = p.parent.relative_to(images)
        label, split = _label_and_split(rel.parts)
        samples.append(Sample(p, label, masks.get((str(rel), p.stem)), split))
    return _dataset(root, "segmentation", samples, mask_layout=True, masks=masks)


def _by_first_folder(files: list[Path], base: Path) -> tuple[list[Path], dict[str, list[Path]]]:
    """Images directly in ``base``, and the others grouped by their first folder below it."""
    loose: list[Path] = []
    groups: dict[str, list[Path]] = {}
    prefix = str(base).rstrip("/" + os.sep) + os.sep
    for f in files:
        text = str(f)  # text, not Path.relative_to: this runs once per file of a dataset
        rel = text[len(prefix) :] if text.startswith(prefix) else str(f.relative_to(base))
        head, below, _ = rel.partition(os.sep)
        if below:
            groups.setdefault(head, []).append(f)
        else:
            loose.append(f)
    return loose, groups


def _class_samples(folder: Path, files: list[Path], split: str | None) -> list[Sample]:
    loose, classes = _by_first_folder(files, folder)
    if loose and classes:
        raise DatasetError(
            f"{folder}: ambiguous layout: {len(loose)} images lie directly in it beside "
            f"{len(classes)} class folders ({', '.join(sorted(classes)[:5])}); move the loose "
            f"images into a class folder, or point at one folder"
        )
    if loose:  # a flat folder is a dataset only when its images carry masks beside them
        pairs = _pair_beside_masks(loose)
        if not any(m for _, m in pairs):
            raise DatasetError(
                f"{folder}: found {len(loose)} images but no class folders or masks, so there are no labels; {EXPECTED}"
            )
        return [Sample(p, None, m, split) for p, m in pairs]
    return [Sample(p, name, m, split) for name in sorted(classes) for p, m in _pair_beside_masks(classes[name])]


def read_class_folders(root: Path) -> Dataset:
    """Class folders (optionally under train/val/test), with masks beside images if present."""
    files = list_images(root)  # one walk of the tree; everything below is grouping
    loose, top = _by_first_folder(files, root)
    split_names = sorted(n for n in top if _split_name(n))
    if split_names and len(split_names) != len(top):
        others = sorted(n for n in top if not _split_name(n))
        raise DatasetError(
            f"{root}: ambiguous layout: split folders ({', '.join(split_names)}) beside "
            f"other folders ({', '.join(others[:5])}); put every class folder under train/, val/ or test/"
        )
    if split_names and not loose:
        samples = [s for n in split_names for s in _class_samples(root / n, top[n], _split_name(n))]
    else:
        samples = _class_samples(root, files, None)
    has_masks = any(s.mask for s in samples)
    return _dataset(
        root,
        "segmentation" if has_masks and not any(s.label for s in samples) else "classes",
        samples,
        mask_layout=has_masks,
    )


def _csv_rows(path: Path) -> tuple[list[dict[str, str]], str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = _columns(reader.fieldnames or [])
            rows = [{k.strip().lower(): (v or "").strip() for k, v in row.items() if k} for row in reader]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot read CSV ({exc})") from exc
    column = next((c for c in PATH_COLUMNS if c in fields), None)
    if column is None:
        raise DatasetError(
            f"{path}: no path column (found columns: {', '.join(fields) or 'none'}); "
            "expected a header path,label[,mask][,split]"
        )
    if not set(ANNOTATION_COLUMNS) & set(fields):  # no annotation at all: is one of the columns a misspelt one?
        for field in fields:
            hint = did_you_mean(field, ANNOTATION_COLUMNS, cutoff=0.8)  # 0.8: metadata columns stay quiet
            if hint:
                raise DatasetError(
                    f"{path}: no {'/'.join(ANNOTATION_COLUMNS)} column, but a {field!r} column.{hint} "
                    "(columns: path,label[,mask][,split][,boxes])"
                )
    return rows, column


def _columns(names: list[str]) -> list[str]:
    return [name.strip().lower() for name in names]


def csv_columns(path: Path) -> list[str]:
    """A CSV file's column names as a dataset CSV is read (stripped, lower-case); none when unreadable."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            return _columns(next(csv.reader(f), []))
    except (OSError, UnicodeDecodeError, csv.Error):
        return []


def _boxes(cell: str, where: str) -> tuple[Box, ...] | None:
    """A ``boxes`` cell: JSON ``[[label, x0, y0, x1, y1], ...]``; empty means not annotated, ``[]`` an image
    annotated as holding no object. A malformed entry is refused, never dropped: dropping it would turn an
    image with a defect into a negative."""
    if not cell:
        return None
    form = "JSON [[label, x0, y0, x1, y1], ...] (corners in pixels)"
    try:
        entries = json.loads(cell)
    except json.JSONDecodeError:
        raise DatasetError(f"{where}: boxes {cell[:60]!r} is not {form}") from None
    if not isinstance(entries, list):
        raise DatasetError(f"{where}: boxes {cell[:60]!r} is not {form}")
    return tuple(_box(entry, where, form) for entry in entries)


def _box(entry: Any, where: str, form: str) -> Box:
    """One ``[label, x0, y0, x1, y1]`` entry of a boxes cell."""
    shown = json.dumps(entry)[:60]
    if not isinstance(entry, list) or len(entry) != 5 or isinstance(entry[0], (list, dict)):
        raise DatasetError(f"{where}: box {shown} is not [label, x0, y0, x1, y1]; the cell must be {form}")
    try:
        x0, y0, x1, y1 = (float(v) for v in entry[1:])
    except (TypeError, ValueError):
        raise DatasetError(f"{where}: box {shown} has a coordinate that is not a number") from None
    if not all(math.isfinite(v) for v in (x0, y0, x1, y1)):
        raise DatasetError(f"{where}: box {shown} has a coordinate that is not a finite number")
    if x1 <= x0 or y1 <= y0:
        raise DatasetError(
            f"{where}: box {shown} has no area (x1 <= x0 or y1 <= y0): boxes are corners [label, x0, y0, x1, y1]; "
            "for [x, y, width, height] write x1 = x + width, y1 = y + height"
        )
    return Box(str(entry[0]), x0, y0, x1, y1)


def read_annotated(root: Path) -> Dataset | None:
    """An annotation format (``inspekt.data.formats``), or None when ``root`` is not one."""
    if not isinstance(root, Path) or detect_format(root) is None:
        return None
    found = read_annotations(root)
    if not found.samples:
        first = "; ".join(f"{p.path}: {p.reason}" for p in found.problems[:3])
        raise DatasetError(f"{root}: no usable images ({len(found.problems)} problems, first: {first or 'none'})")
    ds = _dataset(root, found.format, list(found.samples), mask_layout=bool(found.mask_classes))
    return replace(ds, problems=found.problems)


def read_csv(path: Path) -> Dataset:
    """A CSV with columns path,label[,mask][,split]; paths relative to the CSV's folder."""
    rows, column = _csv_rows(path)
    base, samples = path.parent, []
    for line, row in enumerate(rows, start=2):
        if not row.get(column):
            raise DatasetError(f"{path}:{line}: empty {column!r} value")
        split = row.get("split") or None
        if split is not None and _split_name(split) is None:
            raise DatasetError(f"{path}:{line}: unknown split {split!r} (use train, val or test)")
        mask = storage.entry_path(base, row["mask"]) if row.get("mask") else None
        image = storage.entry_path(base, row[column])  # relative to the CSV, or a URL as written
        boxes = _boxes(row.get("boxes", ""), f"{path}:{line}")
        samples.append(Sample(image, row.get("label") or None, mask, split and _split_name(split), boxes))
    return _dataset(path, "csv", samples, mask_layout=any(s.mask for s in samples))


def open_dataset(path: str | Path | storage.RemotePath, *, original: bool = False) -> Dataset:
    """Detect a dataset's layout and read it, with the corrections made to it applied
    (``inspekt.data.corrections``: relabelled, re-masked, excluded images).

    Args:
        path: a dataset folder, a CSV file or an annotation file / folder; local or an fsspec URL
            (``s3://bucket/parts/``), whose samples are then ``storage.RemotePath`` objects read on
            demand, never copied.
        original: read the dataset as its files say, without the corrections.

    Returns:
        The typed dataset.

    Raises:
        DatasetError: missing path, empty or ambiguous layout, or a malformed CSV (or corrections.csv).
    """
    dataset = _read_layout(storage.as_path(path))
    return dataset if original else apply_corrections(dataset)


def _read_layout(root: Path | storage.RemotePath) -> Dataset:
    if not root.exists():
        reason = root.missing_reason() if isinstance(root, storage.RemotePath) else "no such file or folder"
        raise DatasetError(f"{root}: {reason}")
    if root.is_file():
        if root.suffix.lower() == ".csv":
            return read_csv(root)
        annotated = read_annotated(root)
        if annotated is not None:
            return annotated
        kind = f"one {root.suffix.lower()} file" if root.suffix.lower() in IMAGE_EXTENSIONS else "a file"
        raise DatasetError(f"{root}: is {kind}, not a dataset; {EXPECTED}")
    found = read_mvtec(root) or read_annotated(root) or read_segmentation(root)
    return found or _class_folders_or_labels_csv(root)


def _class_folders_or_labels_csv(root: Path | storage.RemotePath) -> Dataset:
    """Class folders, unless they give no more than one class and a ``labels.csv`` beside them
    annotates the images (``images/<anything>/`` + ``labels.csv``, or flat images + ``labels.csv``):
    then the CSV is what the user wrote, and the folder names are not labels. A CSV without a label,
    mask or boxes column, or one that lists fewer images than the folders hold (a one-class anomaly
    set with someone's notes beside it), leaves the folders as they are."""
    beside = root / LABELS_CSV
    if not beside.is_file() or not set(csv_columns(beside)) & set(ANNOTATION_COLUMNS):
        return read_class_folders(root)
    try:
        folders = read_class_folders(root)
    except DatasetError:
        return read_csv(beside)
    if len(folders.classes) > 1:
        return folders
    listed = read_csv(beside)
    return listed if len(listed) >= len(folders) else folders
