"""Pascal VOC: ``ROOT/JPEGImages`` with ``ROOT/SegmentationClass/<stem>.png`` (palette PNGs: the
palette index is the class; colour PNGs are matched to the VOC colour map) and/or
``ROOT/Annotations/<stem>.xml`` boxes. Class names come from ``labelmap.txt`` (CVAT's VOC export:
``name:r,g,b::``) or are VOC's 21; index 255 (void, the outline VOC draws around objects) counts as
background. With SegmentationClass present, only images that have a mask PNG are read (VOC 2012 masks
a subset of its images). Splits come from ``ImageSets/Segmentation`` or ``ImageSets/Main``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inspekt.data.dataset import SPLIT_ALIASES, FileProblem
from inspekt.data.formats.common import Entry, Shape, file_digest
from inspekt.data.formats.cvat import parse_xml
from inspekt.errors import DatasetError
from inspekt.io import list_images

VOC_CLASSES = (
    "background aeroplane bicycle bird boat bottle bus car cat chair cow diningtable dog horse motorbike "
    "person pottedplant sheep sofa train tvmonitor"
).split()
VOID = 255


def detect(root: Path) -> bool:
    """A folder with JPEGImages/ and Annotations/ or SegmentationClass/."""
    return (root / "JPEGImages").is_dir() and ((root / "Annotations").is_dir() or (root / "SegmentationClass").is_dir())


def palette(n: int = 256) -> np.ndarray:
    """VOC's colour map: class i's colour spreads i's bits, three at a time, over the high bits of R, G, B."""
    colours = np.zeros((n, 3), dtype=np.uint8)
    for i in range(n):
        code, rgb = i, [0, 0, 0]
        for bit in range(8):
            for channel in range(3):
                rgb[channel] |= ((code >> channel) & 1) << (7 - bit)
            code >>= 3
        colours[i] = rgb
    return colours


def class_table(root: Path) -> tuple[list[str], np.ndarray]:
    """Class names by index and their colours (labelmap.txt when present, else VOC's)."""
    labelmap = root / "labelmap.txt"
    if not labelmap.is_file():
        return list(VOC_CLASSES), palette()[: len(VOC_CLASSES)]
    names, colours = [], []
    for line in labelmap.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            name, colour, *_ = line.split(":") + ["", ""]
            names.append(name.strip())
            try:
                colours.append([int(c) for c in colour.split(",")])
            except ValueError:
                raise DatasetError(f"{labelmap}: {line!r} needs name:r,g,b (e.g. crack:128,0,0::)") from None
    return names, np.array(colours, dtype=np.uint8).reshape(-1, 3)


def _indices(path: Path, colours: np.ndarray) -> np.ndarray:
    """A SegmentationClass PNG as class indices (palette index, or the colour's row in ``colours``)."""
    from PIL import Image

    with Image.open(path) as img:
        if img.mode in ("P", "L"):
            return np.array(img)
        rgb = np.array(img.convert("RGB"))
    out = np.full(rgb.shape[:2], VOID, dtype=np.uint8)
    for index, colour in enumerate(colours):
        out[(rgb == colour).all(axis=-1)] = index
    return out


def _mask_shapes(path: Path, names: list[str], colours: np.ndarray) -> list[Shape]:
    indices = _indices(path, colours)
    unknown = sorted(set(np.unique(indices).tolist()) - {0, VOID} - set(range(len(names))))
    if unknown:
        raise ValueError(f"class indices {unknown[:5]} are not in the {len(names)} classes; add them to labelmap.txt")
    return [Shape(names[k], mask=indices == k) for k in np.unique(indices).tolist() if k not in (0, VOID)]


def _box_shapes(path: Path) -> tuple[list[Shape], tuple[int, int] | None]:
    root = parse_xml(path)
    size = root.find("size")
    dims = (int(size.findtext("width", "0")), int(size.findtext("height", "0"))) if size is not None else None
    shapes = []
    for obj in root.iter("object"):
        box = obj.find("bndbox")
        # VOC counts pixels from 1 and includes xmax: pixel-edge coordinates are xmin - 1 .. xmax
        x0, y0, x1, y1 = (float(box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
        shapes.append(Shape(obj.findtext("name", "").strip(), box=(x0 - 1, y0 - 1, x1, y1)))
    return shapes, dims if dims and all(dims) else None


def _splits(root: Path) -> dict[str, str]:
    """Image stem -> split from ImageSets/{Segmentation,Main}/{train,val,test}.txt."""
    found: dict[str, str] = {}
    for folder in ("Main", "Segmentation"):
        for listing in sorted((root / "ImageSets" / folder).glob("*.txt")):
            split = SPLIT_ALIASES.get(listing.stem.lower())
            for line in listing.read_text(encoding="utf-8").split() if split else []:
                found[line] = split
    return found


def _entry(root: Path, image: Path, names: list[str], colours: np.ndarray) -> Entry:
    xml, png = root / "Annotations" / f"{image.stem}.xml", root / "SegmentationClass" / f"{image.stem}.png"
    entry = Entry(image, str(png if png.is_file() else xml))
    if xml.is_file():
        entry.shapes, entry.size = _box_shapes(xml)
    if png.is_file():
        entry.shapes += _mask_shapes(png, names, colours)
    return entry


def read(root: Path) -> tuple[list[Entry], list[FileProblem], str]:
    """A Pascal VOC root: (entries, problems, digest)."""
    names, colours = class_table(root)
    seg = (root / "SegmentationClass").is_dir()
    images = [
        p
        for p in list_images(root / "JPEGImages")
        if not seg or (root / "SegmentationClass" / f"{p.stem}.png").is_file()
    ]
    splits, entries, problems = _splits(root), [], []
    for image in images:
        try:
            entry = _entry(root, image, names, colours)
        except (DatasetError, ValueError, TypeError, AttributeError, OSError) as exc:
            problems.append(FileProblem(str(image), f"annotation unreadable: {exc}; the image is skipped"))
            continue
        entry.split = splits.get(image.stem)
        entries.append(entry)
    files = sorted(p for d in ("Annotations", "SegmentationClass") for p in (root / d).glob("*") if p.is_file())
    return entries, problems, file_digest(files + [p for p in [root / "labelmap.txt"] if p.is_file()])
