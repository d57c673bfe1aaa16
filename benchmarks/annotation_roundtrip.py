"""Annotation round trip on magnetic_tile: the dataset exported to COCO, YOLO-seg and Label Studio and
imported back with ``open_dataset`` (issue 21).

    python benchmarks/annotation_roundtrip.py [--data ../shared/datasets/magnetic_tile/labels.csv] [--limit N]

Prints, per format: samples written and read back, whether paths and labels match (YOLO copies the
images and has no image classes), mask agreement over all pixels (pooled IoU of the defect pixels,
>= 128 in inspekt's binary rule), the share of images whose mask came back pixel-exact, the worst
single image's IoU, the problems reported, and the export and import times. The mask cache lives in a
temporary folder, so every import rasterises afresh. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile" / "labels.csv"


def _foreground(sample, shape) -> np.ndarray:
    from inspekt.data.masks import read_mask

    return read_mask(sample.mask) >= 128 if sample.mask is not None else np.zeros(shape, bool)


def compare(original, back) -> dict:
    """Mask agreement and sample matching of two datasets read in the same order."""
    from inspekt.io import image_size

    both = either = exact = 0
    worst = 1.0
    for a, b in zip(original.samples, back.samples):
        width, height = image_size(a.path)
        want, got = _foreground(a, (height, width)), _foreground(b, (height, width))
        i, u = int((want & got).sum()), int((want | got).sum())
        both, either, exact = both + i, either + u, exact + int(i == u)
        worst = min(worst, i / u if u else 1.0)
    same_paths = [s.path.resolve() for s in original.samples] == [s.path.resolve() for s in back.samples]
    same_labels = [s.label for s in original.samples] == [s.label for s in back.samples]
    return {
        "iou": both / max(1, either),
        "exact": exact / max(1, len(back)),
        "worst": worst,
        "paths": same_paths,
        "labels": same_labels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT)
    parser.add_argument("--limit", type=int, default=0, help="Only the first N images (0: all).")
    args = parser.parse_args()
    if not args.data.exists():
        print(f"skipped: {args.data} is not present (the development datasets live only on the team's machines)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["INSPEKT_CACHE_DIR"] = str(Path(tmp) / "cache")
        from inspekt.data import open_dataset
        from inspekt.data.formats.export import export_dataset

        original = open_dataset(args.data)
        if args.limit:
            original = replace(original, samples=original.samples[: args.limit])
        print(f"{args.data}: {len(original)} images, {original.n_masks} masks; load {os.getloadavg()[0]:.2f} (1 min)")
        print(
            f"{'format':12s} {'images':>13s} {'paths':>5s} {'labels':>6s} {'IoU':>7s} {'exact':>6s} "
            f"{'worst':>6s} {'problems':>8s} {'export s':>8s} {'import s':>8s}"
        )
        for fmt in ("coco", "yolo", "labelstudio"):
            start = time.perf_counter()
            written = export_dataset(original, fmt, Path(tmp) / fmt)
            exported = time.perf_counter() - start
            back = open_dataset(written.parent if fmt == "yolo" else written)
            imported = time.perf_counter() - start - exported
            r = compare(original, back)
            labels = "n/a" if fmt == "yolo" else str(r["labels"])
            paths = "copy" if fmt == "yolo" else str(r["paths"])
            print(
                f"{fmt:12s} {len(original):>6d} -> {len(back):<5d} {paths:>5s} {labels:>6s} {r['iou']:7.4f} "
                f"{r['exact']:6.1%} {r['worst']:6.3f} {len(back.problems):8d} {exported:8.2f} {imported:8.2f}"
            )
    print(
        f"load average after: {os.getloadavg()[0]:.2f} (1 min) on {os.cpu_count()} CPUs, "
        f"python {sys.version.split()[0]}"
    )


if __name__ == "__main__":
    main()
