"""Segmentation quality and training time on ../shared/datasets/magnetic_tile, binary defect vs
background over all six classes (``Free`` images have empty masks).

A stratified 80/20 split with seed 0 (``inspekt.data.split``); the 80 % trains (its own seeded
10 % is carved for checkpoint selection), the 20 % is scored with ``inspekt.evaluate`` through the
Predictor at the original image size. Prints dataset-level defect IoU and Dice, IoU per defect
type (pixels of that type's test images), image-level AUROC / F1, training time and ms/image.

    .venv/bin/python benchmarks/segment_magnetic_tile.py [--threads 2] [--keep DIR] [key=value ...]
    .venv/bin/python benchmarks/segment_magnetic_tile.py --bundle DIR/model.inspekt   # score a kept model
    .venv/bin/python benchmarks/segment_magnetic_tile.py --defaults   # what plain `inspekt train segment` gives

Extra ``key=value`` items override the recipe below (e.g. ``epochs=5``).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"
# The recipe: the built-in UNet from scratch on 128-pixel windows of the half-size image (tiled) with
# a strided stem (4x cheaper per window than stride 1, so many more epochs fit), CLAHE in the card's
# preprocessing, images with and without defects drawn equally often (73 % are defect-free), most
# crops centred on a defect, and the card's threshold calibrated on validation (best defect IoU);
# sized to train within 20 minutes on 2 cores (about 21 s per epoch on one core).
RECIPE = [
    "model=tiny_unet",
    "model_params.width=16",
    "model_params.stem_stride=2",
    "resize=tile",
    "scale=0.5",
    "imgsz=128",
    "clahe=2.0",
    "epochs=75",
    "batch=16",
    "lr=0.003",
    "augment=light",
    "flips=both",
    "val=0.1",
    "patience=100",
    "defect_crops=0.8",
    "sampler=balanced",
    "class_weights=auto",
    "threshold=auto",
]


def _report(scored, seconds: float | None) -> None:
    m = scored.metrics
    print(f"test images {m['n_images']} ({m['n_defective']} with defects), skipped {len(scored.skipped)}")
    post = scored.postprocess
    print(
        f"post-processing (card): threshold {post['threshold']}, min area {post['min_area']} px, "
        f"kernel {post['kernel']}"
    )
    print(
        f"defect IoU {m['defect_iou']:.4f}  Dice {m['dice']:.4f}  per-image IoU {m['per_image_iou']:.4f}  "
        f"pixel precision {m['pixel_precision']:.4f}  recall {m['pixel_recall']:.4f}"
    )
    auroc = "-" if m["image_auroc"] is None else f"{m['image_auroc']:.4f}"
    print(
        f"image AUROC {auroc}  image precision {m['image_precision']:.4f}  recall {m['image_recall']:.4f}  "
        f"F1 {m['image_f1']:.4f}"
    )
    totals: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for row in scored.rows:
        tally = totals[row["label"] or "?"]
        for i, key in enumerate(("tp", "fp", "fn")):
            tally[i] += row[key]
    print("IoU per defect type (pixels of that type's test images):")
    for name, (tp, fp, fn) in sorted(totals.items()):
        iou = tp / (tp + fp + fn) if tp + fp + fn else float("nan")
        print(
            f"  {name:10s} IoU {iou:.4f}  Dice {2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float('nan'):.4f}"
            f"  (false-positive pixels {fp})"
        )
    ms = sum(scored.times) / max(1, len(scored.times))
    print(f"inference {ms:.1f} ms/image (ONNX Runtime, original size, tiled where the card says)")
    if seconds is not None:
        print(f"training {seconds:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="folder to keep the bundle (model.inspekt) and split CSV in")
    parser.add_argument("--bundle", type=Path, help="score this bundle instead of training one")
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="train with inspekt's defaults (what plain `inspekt train segment` does) instead of the recipe",
    )
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"{args.data} is not present; this benchmark needs the development datasets", file=sys.stderr)
        return 1

    from inspekt.config import TrainConfig, build_config
    from inspekt.data import open_dataset
    from inspekt.data.split import split_dataset, write_split_csv
    from inspekt.engine.evaluator import evaluate
    from inspekt.engine.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        split = split_dataset(open_dataset(args.data), val=0.0, test=0.2, seed=0)
        csv_path = write_split_csv(split, Path(tmp) / "split.csv")
        seconds, bundle = None, args.bundle
        if bundle is None:
            recipe = [] if args.defaults else RECIPE
            cfg = build_config(
                TrainConfig,
                options={"task": "segment", "data": str(csv_path), "out": tmp, "threads": args.threads},
                overrides=recipe + args.overrides,
            )
            print("recipe:", " ".join(recipe + args.overrides) or "inspekt's defaults", flush=True)
            t0 = time.perf_counter()
            result = train(
                cfg,
                on_epoch=lambda r: print(
                    f"  epoch {r['epoch']:3d}  loss {r['train_loss']:.3f}  val IoU {r['val_iou']:.3f}  "
                    f"{r['seconds']:.0f}s",
                    flush=True,
                ),
            )
            seconds, bundle = time.perf_counter() - t0, result.bundle
            if args.keep:
                from inspekt.bundle import copy_bundle, open_bundle

                args.keep.mkdir(parents=True, exist_ok=True)
                copy_bundle(open_bundle(bundle), args.keep / "model.inspekt", overwrite=True)
                shutil.copy(csv_path, args.keep / "split.csv")
        scored = evaluate(bundle, csv_path, split="test", batch_size=8)
        _report(scored, seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
