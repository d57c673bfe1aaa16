"""Label Studio's JSON export (a list of tasks): ``choices`` become the image's class,
``rectanglelabels`` boxes, ``polygonlabels`` polygons and ``brushlabels`` masks (brush RLE). Coordinates
are percentages of ``original_width`` / ``original_height``. The first annotation of a task that was not
cancelled is read; predictions are not labels and are ignored.

The writer makes tasks Label Studio imports, with the model's guesses as ``predictions`` (or as
``annotations`` for a dataset); ``label_config`` is a labelling interface whose tag names match."""

from __future__ import annotations

import math
import re
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from inspekt.data.dataset import FileProblem
from inspekt.data.formats import brush
from inspekt.data.formats.coco import load_json, sniff
from inspekt.data.formats.common import Entry, Shape, file_digest, find_image
from inspekt.data.formats.records import Record, outline, regions
from inspekt.errors import DatasetError
from inspekt.io import IMAGE_EXTENSIONS

UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")  # Label Studio prefixes uploaded file names with a short id


def detect(path: Path) -> bool:
    """A ``.json`` file holding a list (Label Studio's export); COCO is one object."""
    return path.is_file() and path.suffix.lower() == ".json" and sniff(path) == "["


def _image_name(data: dict) -> str | None:
    """The task's image reference: ``data.image``, else the first value that names an image file."""
    if isinstance(data.get("image"), str):
        return data["image"]
    names = [
        v for v in data.values() if isinstance(v, str) and Path(urlparse(v).path).suffix.lower() in IMAGE_EXTENSIONS
    ]
    return names[0] if names else None


def _resolve(json_path: Path, ref: str) -> Path:
    """A local file for an image reference (local-files ``?d=``, an upload, a URL or a path)."""
    url = urlparse(ref)
    name = unquote(parse_qs(url.query).get("d", [""])[0]) or unquote(url.path)
    if Path(name).is_absolute() and Path(name).is_file():
        return Path(name)
    base = json_path.parent
    bases = [base, base / "images", base.parent, base.parent / "images"]
    found = find_image(bases, name.lstrip("/"))
    return found if found.is_file() else find_image(bases, UPLOAD_PREFIX.sub("", Path(name).name))


def _rectangle(value: dict, w: int, h: int) -> tuple[float, float, float, float]:
    """A (possibly rotated) rectangle's axis-aligned bounds in pixels."""
    x, y = value["x"] * w / 100, value["y"] * h / 100
    bw, bh = value["width"] * w / 100, value["height"] * h / 100
    angle = math.radians(value.get("rotation", 0) or 0)
    corners = np.array([[0, 0], [bw, 0], [bw, bh], [0, bh]]) @ np.array(
        [[math.cos(angle), math.sin(angle)], [-math.sin(angle), math.cos(angle)]]
    )
    return x + corners[:, 0].min(), y + corners[:, 1].min(), x + corners[:, 0].max(), y + corners[:, 1].max()


def _shape(result: dict, kind: str) -> Shape | str | None:
    """One result as a shape; a string when it cannot be read; None for choices (no shape)."""
    value, w, h = result.get("value", {}), result.get("original_width"), result.get("original_height")
    labels = value.get(kind) or []
    if not labels:
        return f"a {kind} result without a label"
    if not w or not h:
        return f"a {kind} result without original_width / original_height"
    if kind == "rectanglelabels":
        return Shape(labels[0], box=_rectangle(value, w, h))
    if kind == "polygonlabels":
        points = [(px * w / 100, py * h / 100) for px, py in value.get("points", [])]
        return (
            Shape(labels[0], polygons=[[c for p in points for c in p]])
            if len(points) >= 3
            else "a polygon under 3 points"
        )
    if value.get("format", "rle") != "rle" or "rle" not in value:
        return "a brush result that is not in RLE format"
    return Shape(labels[0], mask=brush.decode(value["rle"], h, w) > 0)


KINDS = ("rectanglelabels", "polygonlabels", "brushlabels")


def _task_entry(path: Path, index: int, task: dict, problems: list[FileProblem]) -> Entry | None:
    ref = _image_name(task.get("data") or {}) if isinstance(task, dict) else None
    where = f"{path.name}: task {task.get('id', index) if isinstance(task, dict) else index}"
    if ref is None:
        problems.append(FileProblem(where, "no image in data (expected data.image); skipped"))
        return None
    done = [a for a in task.get("annotations") or [] if not a.get("was_cancelled")]
    if not done:
        problems.append(
            FileProblem(where, f"{ref} has no annotation (only predictions or none); label it or leave it out")
        )
        return None
    entry = Entry(_resolve(path, ref), f"{where} ({Path(ref).name})")
    for result in done[0].get("result") or []:
        kind = result.get("type")
        if kind == "choices":
            entry.label = (result.get("value", {}).get("choices") or [None])[0]
            continue
        if kind not in KINDS:
            problems.append(
                FileProblem(entry.where, f"result type {kind!r} is not read (only choices, {', '.join(KINDS)})")
            )
            continue
        try:
            shape = _shape(result, kind)
        except (DatasetError, KeyError, TypeError, ValueError) as exc:
            shape = f"unreadable {kind} ({exc})"
        if isinstance(shape, str):
            problems.append(FileProblem(entry.where, f"{shape}; skipped (fix it in Label Studio and export again)"))
            continue
        entry.size = entry.size or (int(result["original_width"]), int(result["original_height"]))
        entry.shapes.append(shape)
    return entry


def read(path: Path) -> tuple[list[Entry], list[FileProblem], str]:
    """A Label Studio JSON export: (entries, problems, digest)."""
    tasks = load_json(path)
    if not isinstance(tasks, list):
        raise DatasetError(f"{path}: not a Label Studio JSON export (a list of tasks); export with the JSON format")
    problems: list[FileProblem] = []
    entries = []
    for i, task in enumerate(tasks):
        try:
            entries.append(_task_entry(path, i, task, problems))
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            problems.append(
                FileProblem(f"{path.name}: task {i}", f"malformed ({exc!r}); export it again from Label Studio")
            )
    return [e for e in entries if e is not None], problems, file_digest([path])


def _result(n: int, kind: str, value: dict, record: Record, score: float | None) -> dict:
    from_name = {"choices": "choice", "rectanglelabels": "box", "polygonlabels": "polygon", "brushlabels": "mask"}[kind]
    out = {"id": f"r{n}", "type": kind, "from_name": from_name, "to_name": "image", "value": value}
    out |= {"original_width": record.width, "original_height": record.height, "image_rotation": 0}
    return out | ({"score": score} if score is not None else {})


def _results(record: Record, masks: str) -> list[dict]:
    w, h = record.width, record.height
    found = []
    if record.label is not None and record.tag:  # a detection's classes are on its rectangles
        found.append(("choices", {"choices": [record.label]}, record.score))
    for region in regions(record):
        if masks == "brush":
            found.append(
                (
                    "brushlabels",
                    {"format": "rle", "rle": brush.encode(region.pixels), "brushlabels": [region.label]},
                    region.score,
                )
            )
            continue
        for polygon in outline(region.pixels):
            points = [[x * 100 / w, y * 100 / h] for x, y in zip(polygon[0::2], polygon[1::2])]
            found.append(("polygonlabels", {"points": points, "polygonlabels": [region.label]}, region.score))
    for box, score in record.scored_boxes() if record.mask is None else ():
        value = {"x": box.x0 * 100 / w, "y": box.y0 * 100 / h, "width": (box.x1 - box.x0) * 100 / w}
        value |= {"height": (box.y1 - box.y0) * 100 / h, "rotation": 0, "rectanglelabels": [box.label]}
        found.append(("rectanglelabels", value, score))
    return [_result(n, kind, value, record, score) for n, (kind, value, score) in enumerate(found)]


def write(records: list[Record], *, model_version: str | None = None, masks: str = "brush") -> list[dict]:
    """Label Studio tasks: with ``model_version`` the results are predictions (pre-annotations, each
    with its score), else annotations. ``masks``: ``brush`` (exact RLE) or ``polygon`` (outlines)."""
    if masks not in ("brush", "polygon"):
        raise ValueError(f"masks={masks!r}: use brush or polygon")
    tasks = []
    for record in records:
        body = {"result": _results(record, masks)}
        if model_version is None:
            tasks.append({"data": {"image": record.image}, "annotations": [body]})
            continue
        body |= {"model_version": model_version} | ({"score": record.score} if record.score is not None else {})
        tasks.append({"data": {"image": record.image}, "predictions": [body]})
    return tasks


def label_config(labels: list[str]) -> str:
    """A Label Studio labelling interface whose tag names match what ``write`` produces."""
    from xml.sax.saxutils import quoteattr

    items = "".join(f"<Label value={quoteattr(name)}/>" for name in labels)
    choices = "".join(f"<Choice value={quoteattr(name)}/>" for name in labels)
    return (
        '<View><Image name="image" value="$image"/>'
        f'<Choices name="choice" toName="image">{choices}</Choices>'
        f'<RectangleLabels name="box" toName="image">{items}</RectangleLabels>'
        f'<PolygonLabels name="polygon" toName="image">{items}</PolygonLabels>'
        f'<BrushLabels name="mask" toName="image">{items}</BrushLabels></View>'
    )
