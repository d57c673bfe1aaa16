"""Classification quality and training time on ../shared/datasets/magnetic_tile (6 classes).

A stratified 80/20 split with seed 0 (``inspekt.data.split``); the 80 % trains (its own seeded
10 % is carved for checkpoint selection, so the 20 % is never looked at during training), the
20 % is scored with ``inspekt.evaluate``. Prints accuracy, macro-F1, per-class F1 and the
training wall-clock time.

    .venv/bin/python benchmarks/classify_magnetic_tile.py [--threads 2] [--defaults] [key=value ...]

Extra ``key=value`` items override the recipe below (e.g. ``epochs=5 imgsz=96``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"
# The recipe: a small CNN from scratch, sized so that training ends within 10 minutes on 2 cores.
RECIPE = [
    "model=tiny_cnn",
    "model_params.width=16",
    "model_params.stem_stride=2",
    "model_params.pool=avgmax",
    "imgsz=128",
    "epochs=55",
    "batch=32",
    "lr=0.001",
    "augment=light",
    "flips=both",
    "val=0.1",
    "patience=100",
    "metric=macro_f1",
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--keep",
        type=Path,
        help="copy the trained bundle here (a .inspekt file) and the split CSV "
        "beside it, e.g. for benchmarks/inference_speed.py",
    )
    parser.add_argument(
        "--defaults",
        action="store_true",
        help="train with inspekt's defaults (what plain `inspekt train classify` does) instead of the recipe",
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
        recipe = [] if args.defaults else RECIPE
        cfg = build_config(
            TrainConfig,
            options={"task": "classify", "data": str(csv_path), "out": tmp, "threads": args.threads},
            overrides=recipe + args.overrides,
        )
        print("recipe:", " ".join(recipe + args.overrides) or "inspekt's defaults", flush=True)
        t0 = time.perf_counter()
        result = train(
            cfg,
            on_epoch=lambda r: print(
                f"  epoch {r['epoch']:3d}  loss {r['train_loss']:.3f}  val macro-F1 {r['val_macro_f1']:.3f}  "
                f"{r['seconds']:.0f}s",
                flush=True,
            ),
        )
        seconds = time.perf_counter() - t0
        scored = evaluate(result.bundle, csv_path, split="test")
        if args.keep:
            from inspekt.bundle import copy_bundle, open_bundle

            kept = copy_bundle(open_bundle(result.bundle), args.keep, archive=True, overwrite=True)
            split_copy = write_split_csv(split, kept.with_suffix(".split.csv"))
            print(f"kept {kept} and {split_copy}")
    metrics = scored.metrics
    print(
        f"\ntraining wall clock: {seconds:.0f} s ({seconds / 60:.1f} min), {len(result.history)} epochs, "
        f"threads={args.threads}"
    )
    print(
        f"test images: {metrics['n']}  accuracy: {metrics['accuracy']:.4f}  macro-F1: {metrics['macro_f1']:.4f}  "
        f"balanced accuracy: {metrics['balanced_accuracy']:.4f}"
    )
    for row in metrics["per_class"]:
        print(
            f"  {row['class']:10s} F1 {row['f1']:.3f}  precision {row['precision']:.3f}  recall {row['recall']:.3f}  "
            f"n={row['support']}"
        )
    print(
        f"target macro-F1 >= 0.85 within 600 s: {'met' if metrics['macro_f1'] >= 0.85 and seconds <= 600 else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
