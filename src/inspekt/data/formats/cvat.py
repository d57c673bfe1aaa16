"""CVAT for images 1.1 XML: per ``<image>``, ``<tag>`` is the image's class, ``<box>`` a box,
``<polygon>`` a polygon and ``<mask>`` a mask (CVAT's RLE inside its box); ``subset`` is the split.
XML is parsed with defusedxml (no entity expansion, no external entities)."""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element

import numpy as np

from inspekt.data.dataset import SPLIT_ALIASES, FileProblem
from inspekt.data.formats.common import Entry, Shape, file_digest, find_image
from inspekt.errors import DatasetError


def parse_xml(path: Path) -> Element:
    """The root element of an XML file; DatasetError naming the file and what broke (also for entity tricks)."""
    import defusedxml
    from defusedxml import ElementTree

    try:
        return ElementTree.parse(path).getroot()
    except ElementTree.ParseError as exc:
        raise DatasetError(f"{path}: not valid XML ({exc}); export it again from the labelling tool") from None
    except defusedxml.DefusedXmlException as exc:
        raise DatasetError(f"{path}: refused: the XML declares entities or external references ({exc!r})") from None
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc})") from None


def detect(path: Path) -> bool:
    """An .xml file whose root element is ``<annotations>`` (read from the file's start only)."""
    if not (path.is_file() and path.suffix.lower() == ".xml"):
        return False
    with path.open("rb") as f:
        head = f.read(4096)
    return b"<annotations" in head


def _mask(element: Element, width: int, height: int) -> np.ndarray:
    """CVAT's mask RLE: alternating background / foreground run lengths over its box, row by row."""
    left, top = int(float(element.get("left"))), int(float(element.get("top")))
    w, h = int(float(element.get("width"))), int(float(element.get("height")))
    counts = [int(c) for c in element.get("rle", "").split(",") if c.strip()]
    if sum(counts) != w * h:
        raise ValueError(f"RLE covers {sum(counts)} pixels, its box {w}x{h}")
    values = np.repeat(np.arange(len(counts)) % 2, counts).astype(bool).reshape(h, w)
    out = np.zeros((height, width), dtype=bool)
    out[top : top + h, left : left + w] = values[: max(0, height - top), : max(0, width - left)]
    return out


def _shape(element: Element, size: tuple[int, int]) -> Shape | None:
    label = element.get("label", "")
    if element.tag == "box":
        return Shape(label, box=tuple(float(element.get(k)) for k in ("xtl", "ytl", "xbr", "ybr")))
    if element.tag == "polygon":
        points = [float(v) for pair in element.get("points", "").split(";") for v in pair.split(",")]
        return Shape(label, polygons=[points]) if len(points) >= 6 else None
    if element.tag == "mask":
        return Shape(label, mask=_mask(element, *size))
    return None


def _entry(path: Path, image: Element, problems: list[FileProblem]) -> Entry:
    name = image.get("name", "")
    size = (int(image.get("width", 0)), int(image.get("height", 0)))
    subset = (image.get("subset") or "").lower()
    entry = Entry(
        find_image([path.parent, path.parent / "images"], name), f"{path.name}: image {image.get('id')} ({name})"
    )
    entry.size, entry.split = (size if all(size) else None), SPLIT_ALIASES.get(subset)
    for element in image:
        if element.tag == "tag":
            entry.label = entry.label or element.get("label")
            continue
        try:
            shape = _shape(element, size)
        except (TypeError, ValueError) as exc:
            problems.append(FileProblem(entry.where, f"<{element.tag}> unreadable ({exc}); skipped (fix it in CVAT)"))
            continue
        if shape is None:
            problems.append(FileProblem(entry.where, f"<{element.tag}> is not read (only tag, box, polygon, mask)"))
        else:
            entry.shapes.append(shape)
    return entry


def read(path: Path) -> tuple[list[Entry], list[FileProblem], str]:
    """A CVAT for images XML file: (entries, problems, digest)."""
    root = parse_xml(path)
    if root.tag != "annotations":
        raise DatasetError(f"{path}: root element <{root.tag}>, not CVAT's <annotations>; export as 'CVAT for images'")
    problems: list[FileProblem] = []
    entries = []
    for image in root.iter("image"):
        try:
            entries.append(_entry(path, image, problems))
        except ValueError as exc:
            where = f"{path.name}: image {image.get('id')} ({image.get('name')})"
            problems.append(FileProblem(where, f"width / height unreadable ({exc}); skipped (fix it in the XML)"))
    return entries, problems, file_digest([path])
