"""A dataset out to a labelling tool's format, and an annotation source in as an inspekt CSV dataset."""

from __future__ import annotations

import csv
import json
import os
import shutil
from pathlib import Path

from inspekt.data.dataset import Dataset, boxes_cell
from inspekt.data.formats import coco, labelstudio, yolo
from inspekt.data.formats.common import Annotations
from inspekt.data.formats.records import Record, from_prediction, from_sample
from inspekt.errors import DatasetError
from inspekt.progress import step

WRITTEN = ("coco", "yolo", "labelstudio")


def dataset_records(ds: Dataset) -> list[Record]:
    """One record per sample; a mask's defect pixels (inspekt's binary rule, ``masks.defect_pixels``) take the
    sample's class, or ``defect`` for unlabelled or normal-labelled images. In a dataset with boxes the
    image labels are not written (the boxes carry the classes)."""
    from inspekt.data.masks import BINARY_THRESHOLD, defect_pixels, read_mask

    records = []
    detection = any(sample.boxes for sample in ds.samples)  # boxes carry the classes: no image-level labels
    with step("reading masks", total=len(ds), announce=False) as advance:
        for sample in ds.samples:
            advance()
            name = sample.label if sample.label and sample.label != ds.normal_class else "defect"
            mask = None
            if sample.mask is not None:
                mask = defect_pixels(read_mask(sample.mask), BINARY_THRESHOLD, sample.mask).astype("uint8")
            records.append(from_sample(sample, mask, ("background", name), tag=not detection))
    return records


def export_dataset(ds: Dataset, fmt: str, out: Path) -> Path:
    """Write ``ds`` in ``fmt`` (coco, yolo or labelstudio) into the folder ``out``; returns the main file."""
    if fmt not in WRITTEN:
        raise DatasetError(f"cannot write {fmt!r}; inspekt writes {', '.join(WRITTEN)}")
    records = dataset_records(ds)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "yolo":
        return yolo.write(records, out)
    if fmt == "coco":  # file_name relative to the annotation file, as COCO tools expect
        for record in records:
            record.image = _cell(Path(record.image), out)
    target = out / ("annotations.json" if fmt == "coco" else "tasks.json")
    doc = coco.write(records) if fmt == "coco" else labelstudio.write(records)
    target.write_text(json.dumps(doc))
    return target


PREDICTION_FORMATS = ("coco", "labelstudio")


def write_predictions(predictions: list, classes: list[str] | tuple[str, ...], fmt: str, model_version: str) -> object:
    """Predictions as pre-annotations a labelling tool imports (a JSON-ready document).

    Args:
        predictions: ``Prediction`` s (class and scores; mask and regions where the model gives them).
        classes: the model's classes (they name the mask's indices).
        fmt: ``coco`` (RLE masks, a score per annotation) or ``labelstudio`` (predictions with
            ``model_version``, brush RLE masks, a score per result).
        model_version: the model that made them (Label Studio shows and filters by it).
    """
    if fmt not in PREDICTION_FORMATS:
        raise DatasetError(f"--format {fmt!r}: predictions are written as {' or '.join(PREDICTION_FORMATS)}")
    records = [from_prediction(p, classes) for p in predictions]
    if fmt == "coco":
        doc = coco.write(records, [c for c in classes if c != "background"])  # the model's class ids
        doc["info"]["description"] = f"predictions of {model_version}, written by inspekt"
        return doc
    return labelstudio.write(records, model_version=model_version)


def _cell(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` when they share a drive, else absolute."""
    try:
        return os.path.relpath(path.resolve(), base.resolve())
    except ValueError:
        return str(path.resolve())


def write_csv_dataset(found: Annotations, out: Path) -> Path:
    """An inspekt CSV dataset in ``out``: labels.csv (path, label, mask, split, boxes as JSON) with the
    mask PNGs copied into masks/; images stay where they are (paths relative to the CSV)."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "labels.csv"
    with target.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "mask", "split", "boxes"])
        for sample in found.samples:
            mask = ""
            if sample.mask is not None:
                (out / "masks").mkdir(exist_ok=True)
                mask = f"masks/{sample.mask.name}"
                shutil.copyfile(sample.mask, out / mask)
            cells = [_cell(sample.path, out), sample.label or "", mask, sample.split or ""]
            writer.writerow(cells + [boxes_cell(sample.boxes)])
    return target


__all__ = ["dataset_records", "export_dataset", "write_csv_dataset", "write_predictions"]
