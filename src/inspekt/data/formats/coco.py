"""COCO JSON (instances): categories; polygons and RLE (pycocotools decodes them) become masks,
``bbox`` boxes. An annotation with neither segmentation nor a box is an image-level class (the
writer uses one for each image's label, with its score for predictions, except for detections)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inspekt.data.dataset import FileProblem
from inspekt.data.formats.common import Entry, Shape, file_digest, find_image, header_size
from inspekt.data.formats.records import Record, regions
from inspekt.errors import DatasetError


def sniff(path: Path) -> str | None:
    """The top-level JSON type's first character (``{`` or ``[``), reading only the file's start."""
    with path.open("rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return chr(head[0]) if head else None


def detect(path: Path) -> bool:
    """A ``.json`` file holding one object (COCO); Label Studio exports a list."""
    return path.is_file() and path.suffix.lower() == ".json" and sniff(path) == "{"


def load_json(path: Path) -> object:
    """A JSON file, or a DatasetError naming the line and column that broke."""
    try:
        return json.loads(path.read_bytes())
    except json.JSONDecodeError as exc:
        raise DatasetError(
            f"{path}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); export it again from the "
            "labelling tool"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None


def _shape(ann: dict, name: str, size: tuple[int, int]) -> Shape | str:
    """One annotation's shape, or why it cannot be used."""
    from pycocotools import mask as coco_mask

    seg, bbox = ann.get("segmentation") or [], ann.get("bbox") or []
    shape = Shape(name)
    if bbox:
        if len(bbox) != 4:
            return f"bbox {bbox} must be [x, y, width, height]"
        x, y, w, h = map(float, bbox)
        shape.box = (x, y, x + w, y + h)
    if isinstance(seg, dict):
        rle = seg
        if isinstance(rle.get("counts"), list):
            rle = coco_mask.frPyObjects(rle, *rle.get("size", (size[1], size[0])))
        if list(rle.get("size", [])) != [size[1], size[0]]:
            return f"RLE size {rle.get('size')} is not the image's [height, width] [{size[1]}, {size[0]}]"
        shape.mask = coco_mask.decode(rle).astype(bool)
    elif seg:
        shape.polygons = [list(map(float, p)) for p in seg if len(p) >= 6 and len(p) % 2 == 0]
        if len(shape.polygons) != len(seg):
            return "a polygon has fewer than 3 points or an odd number of coordinates"
    return shape


MALFORMED = (KeyError, TypeError, ValueError, AttributeError)  # a record of the wrong shape


def _categories(path: Path, doc: dict) -> dict:
    try:
        return {c["id"]: str(c["name"]) for c in doc.get("categories", [])}
    except MALFORMED:
        raise DatasetError(f"{path}: categories must be a list of {{id, name}} objects") from None


def _annotate(ann: dict, by_id: dict, categories: dict) -> str | None:
    """Add one annotation to its image's entry; returns what is wrong with it, if anything."""
    entry, name = by_id.get(ann.get("image_id")), categories.get(ann.get("category_id"))
    if entry is None:
        return f"image_id {ann.get('image_id')!r} is not in images; fix it or add the image"
    if name is None:
        known = ", ".join(f"{k}={v}" for k, v in list(categories.items())[:8])
        return f"unknown category_id {ann.get('category_id')!r} (categories: {known}); fix it or add the category"
    if not ann.get("segmentation") and not ann.get("bbox"):
        entry.label = entry.label or name
        return None
    shape = _shape(ann, name, entry.size or header_size(entry.image))
    if isinstance(shape, str):
        return f"{shape}; skipped (fix it in the labelling tool)"
    entry.shapes.append(shape)
    return None


def _entries(path: Path, doc: dict, problems: list[FileProblem]) -> list[Entry]:
    categories = _categories(path, doc)
    bases = [path.parent, path.parent / "images", path.parent.parent, path.parent.parent / "images"]
    entries, by_id = [], {}
    for n, image in enumerate(doc.get("images", [])):
        try:
            name = str(image.get("file_name", ""))
            size = (int(image["width"]), int(image["height"])) if "width" in image and "height" in image else None
        except MALFORMED as exc:
            problems.append(
                FileProblem(f"{path.name}: images[{n}]", f"malformed ({exc}); needs file_name, width, height")
            )
            continue
        entry = Entry(find_image(bases, name), f"{path.name}: image {image.get('id')} ({name})", size)
        entries.append(entry)
        by_id[image.get("id")] = entry
    for n, ann in enumerate(doc.get("annotations", [])):
        try:
            problem = _annotate(ann, by_id, categories)
        except MALFORMED as exc:
            problem = f"malformed ({exc!r}); needs image_id, category_id and a segmentation or bbox"
        if problem:
            where = ann.get("id", n) if isinstance(ann, dict) else n
            problems.append(FileProblem(f"{path.name}: annotation {where}", problem))
    return entries


def read(path: Path) -> tuple[list[Entry], list[FileProblem], str]:
    """A COCO instances file: (entries, problems, digest)."""
    doc = load_json(path)
    if not isinstance(doc, dict) or "images" not in doc or "categories" not in doc:
        found = ", ".join(list(doc)[:6]) if isinstance(doc, dict) else type(doc).__name__
        raise DatasetError(f"{path}: not a COCO file (needs images, annotations, categories; found {found})")
    problems: list[FileProblem] = []
    return _entries(path, doc, problems), problems, file_digest([path])


def _rle(pixels: np.ndarray) -> dict:
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(pixels.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def write(records: list[Record], classes: Sequence[str] = ()) -> dict:
    """A COCO instances document: masks as one RLE annotation per connected region, boxes, and (unless
    the record is a detection's, whose boxes carry the classes) the image's label as an annotation
    without a shape; ``score`` (and ``scores``) where the record has them.

    Category ids are stable: ``classes`` (a model's, in its order) take 1, 2, ...; other names follow in
    sorted order. So a detector's predictions and the export of its dataset number the classes alike.
    """
    images, found = [], []
    for image_id, record in enumerate(records, start=1):
        images.append({"id": image_id, "file_name": record.image, "width": record.width, "height": record.height})
        shapes = [(r.label, r.box, _rle(r.pixels), int(r.pixels.sum()), r.score) for r in regions(record)]
        if record.mask is None:
            shapes += [(b.label, (b.x0, b.y0, b.x1, b.y1), [], b.area, score) for b, score in record.scored_boxes()]
        for label, box, seg, area, score in shapes:
            ann = {"image_id": image_id, "category_id": label, "segmentation": seg, "area": float(area)}
            ann |= {"bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "iscrowd": int(bool(seg))}
            found.append(ann | ({"score": score} if score is not None else {}))
        if record.label is not None and record.tag:
            tag = {"image_id": image_id, "category_id": record.label, "segmentation": [], "area": 0.0}
            tag |= {"iscrowd": 0} | ({"score": record.score} if record.score is not None else {})
            found.append(tag | ({"scores": record.scores} if record.scores else {}))
    names = list(dict.fromkeys(classes))
    names += sorted({ann["category_id"] for ann in found} - set(names))
    ids = {name: i for i, name in enumerate(names, start=1)}
    for ann_id, ann in enumerate(found, start=1):
        ann["id"], ann["category_id"] = ann_id, ids[ann["category_id"]]
    return {
        "info": {"description": "written by inspekt"},
        "images": images,
        "annotations": found,
        "categories": [{"id": ids[n], "name": n, "supercategory": ""} for n in names],
    }
