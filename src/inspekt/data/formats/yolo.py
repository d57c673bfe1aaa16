"""YOLO detection and segmentation: ``ROOT/images/**`` with mirrored ``ROOT/labels/**/<stem>.txt``, one
object a line (``class cx cy w h``, or ``class x1 y1 x2 y2 x3 y3 ...`` for a polygon, all normalised to
0..1); class names from ``data.yaml`` (``names``) or ``classes.txt``. An image without a label file, or
with an empty one, has no objects. YOLO classification (``ROOT/train/<class>/``) is the class-folder layout."""

from __future__ import annotations

import shutil
from pathlib import Path

from inspekt.data.dataset import SPLIT_ALIASES, FileProblem
from inspekt.data.formats.common import Entry, Shape, file_digest, header_size
from inspekt.data.formats.records import Record, outline, regions
from inspekt.errors import DatasetError
from inspekt.io import list_images

FIX = "YOLO lines are 'class cx cy w h' (boxes) or 'class x1 y1 x2 y2 x3 y3 ...' (polygons), normalised to 0..1"


def detect(root: Path) -> bool:
    """A folder with images/ and a labels/ folder holding .txt files."""
    labels = root / "labels"
    return root.is_dir() and (root / "images").is_dir() and labels.is_dir() and any(labels.rglob("*.txt"))


def _names_file(root: Path) -> Path | None:
    candidates = [root / "data.yaml", root / "dataset.yaml", *sorted(root.glob("*.yaml")), root / "classes.txt"]
    return next((c for c in [*candidates, root / "labels" / "classes.txt"] if c.is_file()), None)


def class_names(root: Path) -> tuple[dict[int, str], Path | None]:
    """Class id -> name from data.yaml's ``names`` (list or mapping) or classes.txt (one per line)."""
    import yaml

    found = _names_file(root)
    if found is None:
        return {}, None
    if found.suffix == ".txt":
        lines = [line.strip() for line in found.read_text(encoding="utf-8").splitlines()]
        return dict(enumerate(line for line in lines if line)), found
    try:
        names = (yaml.safe_load(found.read_text(encoding="utf-8")) or {}).get("names")
    except (yaml.YAMLError, AttributeError) as exc:
        raise DatasetError(
            f"{found}: not a YAML mapping with 'names' ({exc}); list the class names under names:"
        ) from None
    if isinstance(names, list):
        return dict(enumerate(map(str, names))), found
    if isinstance(names, dict):
        return {int(k): str(v) for k, v in names.items()}, found
    raise DatasetError(f"{found}: no 'names' list; add names: [class0, class1, ...]")


def _shape(values: list[str], names: dict[int, str], size: tuple[int, int]) -> Shape | str:
    """One label line as a shape in pixels, or what is wrong with it."""
    if len(values) != 5 and (len(values) < 7 or len(values) % 2 == 0):
        return f"has {len(values)} values; {FIX}"
    try:
        cls, numbers = int(values[0]), [float(v) for v in values[1:]]
    except ValueError:
        return f"is not numbers ({' '.join(values)[:60]}); {FIX}"
    name = names.get(cls, str(cls) if not names else None)
    if name is None:
        return f"class {cls} is not in the class names (0..{max(names)}); fix the id or add the name"
    w, h = size
    if len(numbers) == 4:
        cx, cy, bw, bh = numbers
        return Shape(name, box=((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h))
    return Shape(name, polygons=[[v * (w if i % 2 == 0 else h) for i, v in enumerate(numbers)]])


def _entry(image: Path, label_file: Path, names: dict[int, str]) -> Entry | str:
    """An image with the objects of its label file (none without one), or why the file is unusable."""
    entry = Entry(image, str(label_file))
    if not label_file.is_file():
        return entry
    size = header_size(image)
    try:
        lines = label_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        return f"cannot read ({exc}); save it as UTF-8 text"
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        shape = _shape(line.split(), names, size)
        if isinstance(shape, str):
            return f"line {number} {shape}; the image is skipped"
        entry.shapes.append(shape)
    return entry


def read(root: Path) -> tuple[list[Entry], list[FileProblem], str]:
    """A YOLO detection / segmentation root: (entries, problems, digest)."""
    names, names_file = class_names(root)
    problems = [] if names else [FileProblem(str(root), "no data.yaml or classes.txt: classes are named by their ids")]
    images, labels = root / "images", root / "labels"
    entries = []
    for image in list_images(images):
        rel = image.relative_to(images)
        label_file = (labels / rel).with_suffix(".txt")
        entry = _entry(image, label_file, names)
        if isinstance(entry, str):
            problems.append(FileProblem(str(label_file), entry))
            continue
        entry.split = SPLIT_ALIASES.get(rel.parts[0].lower()) if len(rel.parts) > 1 else None
        entries.append(entry)
    files = sorted(labels.rglob("*.txt")) + ([names_file] if names_file else [])
    return entries, problems, file_digest(files)


def write(records: list[Record], out: Path) -> Path:
    """A YOLO-seg dataset in ``out``: images copied to images/, one polygon line per mask region (boxes
    when a record has no mask) in labels/, class names in data.yaml. Returns data.yaml's path."""
    import yaml

    found = [(record, regions(record)) for record in records]
    classes = sorted({r.label for _, rs in found for r in rs} | {b.label for rec in records for b in rec.boxes})
    for index, (record, parts) in enumerate(found):
        name = f"{index:06d}_{Path(record.image).name}"
        (out / "images").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(record.image, out / "images" / name)
        lines = []
        for region in parts:
            for polygon in outline(region.pixels):
                coords = [v / (record.width if i % 2 == 0 else record.height) for i, v in enumerate(polygon)]
                lines.append(" ".join([str(classes.index(region.label)), *(f"{c:.6f}" for c in coords)]))
        for box in record.boxes if record.mask is None else ():
            w, h = record.width, record.height
            cx, cy, bw, bh = (
                (box.x0 + box.x1) / 2 / w,
                (box.y0 + box.y1) / 2 / h,
                (box.x1 - box.x0) / w,
                (box.y1 - box.y0) / h,
            )
            lines.append(f"{classes.index(box.label)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        (out / "labels").mkdir(parents=True, exist_ok=True)
        (out / "labels" / name).with_suffix(".txt").write_text("".join(line + "\n" for line in lines))
    data = out / "data.yaml"
    data.write_text(yaml.safe_dump({"path": ".", "train": "images", "names": dict(enumerate(classes))}))
    return data
