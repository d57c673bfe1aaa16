"""Annotation formats of labelling tools, in and out: one module per format, one row per format below.

Reading gives ``Annotations`` (samples with boxes and cached mask PNGs, and the problems found, each
naming the file, what is wrong and the fix); ``layouts.open_dataset`` turns them into a ``Dataset``.
Writing takes ``records.Record`` s made from dataset samples or predictions.

=============  ===========================================  ============================================
format         read                                         written
=============  ===========================================  ============================================
coco           a .json object (images, annotations,         RLE masks per region, boxes, image classes,
               categories): polygons, RLE, bbox, classes    scores
yolo           ROOT/images + ROOT/labels/*.txt (boxes,      polygons per region (YOLO-seg), boxes
               polygons), data.yaml / classes.txt names
voc            ROOT/JPEGImages + SegmentationClass / XML    --
cvat           a CVAT for images .xml (tag, box, polygon,   --
               mask)
labelstudio    a Label Studio JSON export (a list): choices,  predictions or annotations: choices, brush RLE
               rectangle, polygon, brush labels             or polygons, rectangles, scores
=============  ===========================================  ============================================
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from inspekt.data.formats import coco, cvat, labelstudio, voc, yolo
from inspekt.data.formats.common import Annotations, build
from inspekt.errors import DatasetError


@dataclass(frozen=True)
class Format:
    """How to recognise a format's path and parse it."""

    detect: Callable[[Path], bool]
    read: Callable  # path -> (entries, problems, digest)
    what: str  # what the path must be, for messages


FORMATS: dict[str, Format] = {
    "coco": Format(coco.detect, coco.read, "a COCO .json file (an object with images, annotations, categories)"),
    "labelstudio": Format(labelstudio.detect, labelstudio.read, "a Label Studio JSON export (a list of tasks)"),
    "cvat": Format(cvat.detect, cvat.read, "a CVAT for images .xml file"),
    "voc": Format(voc.detect, voc.read, "a folder with JPEGImages/ and SegmentationClass/ or Annotations/"),
    "yolo": Format(yolo.detect, yolo.read, "a folder with images/ and labels/*.txt"),
}


def detect_format(path: Path) -> str | None:
    """The format whose structure ``path`` has, or None."""
    return next((name for name, fmt in FORMATS.items() if fmt.detect(path)), None)


def read_annotations(path: str | Path, fmt: str = "auto") -> Annotations:
    """Read an annotation file or folder.

    Args:
        path: the annotation file (COCO / Label Studio .json, CVAT .xml) or folder (VOC, YOLO).
        fmt: a name in ``FORMATS``, or ``auto`` to detect it.

    Returns:
        The samples (masks rasterised into the cache, see ``common``) and the problems found.

    Raises:
        DatasetError: an unknown format, a path that is not the format, or a malformed file.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder")
    if fmt == "auto":
        fmt = detect_format(path) or ""
        if not fmt:
            raise DatasetError(f"{path}: not an annotation format inspekt reads; expected {_expected()}")
    elif fmt not in FORMATS:
        raise DatasetError(f"unknown annotation format {fmt!r}; use one of auto, {', '.join(FORMATS)}")
    elif not FORMATS[fmt].detect(path):
        raise DatasetError(f"{path}: is not {FORMATS[fmt].what}")
    entries, problems, digest = FORMATS[fmt].read(path)
    return build(fmt, path, entries, problems, digest)


def _expected() -> str:
    return "; ".join(f"{name}: {f.what}" for name, f in FORMATS.items())


__all__ = ["FORMATS", "Annotations", "detect_format", "read_annotations"]
