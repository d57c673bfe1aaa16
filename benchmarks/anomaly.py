"""Anomaly detection side by side: every method trained on normal images only, then scored through
the Predictor with ``inspekt.evaluate``. Prints one table: image AUROC, AUPR, F1 at the calibrated
threshold, pixel AUROC / AUPRO where masks exist, training time and ms/image.

* ``dice`` (../shared/datasets/dice): train on train/good (20 % of it carved for calibration), test on
  test/ (315 good, 352 anomalous, no masks). template_ratio gets the 11 pose classes from labels.csv.
* ``magnetic_tile``: train on 70 % of ``Free`` (seed 0; 20 % of that carved for calibration), test on
  the other 30 % plus every defect image, with masks for pixel metrics.

    .venv/bin/python benchmarks/anomaly.py dice [--methods draem padim ...] [--threads 2] [--imgsz 128]
    .venv/bin/python benchmarks/anomaly.py magnetic_tile --imgsz 256

Extra ``key=value`` items are passed to every training run (e.g. ``epochs=2``). Times depend on what
else runs: the table's header names the CPU's instruction sets and the load average before and after.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
METHODS = ("draem", "ae_ssim", "template_ratio", "padim", "patchcore")


def magnetic_tile_csv(folder: Path, seed: int = 0) -> Path:
    """The benchmark split as a dataset CSV: 70 % of Free trains, the rest of Free and all defects test."""
    root = DATASETS / "magnetic_tile"
    with (root / "labels.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    free = [r for r in rows if r["label"] == "Free"]
    order = np.random.default_rng(seed).permutation(len(free))
    train = {free[i]["image"] for i in order[: int(round(0.7 * len(free)))]}
    out = folder / "magnetic_tile.csv"
    with out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "mask", "split"])
        for r in rows:
            split = "train" if r["image"] in train else "test"
            mask = "" if r["label"] == "Free" else str(root / r["mask"])
            writer.writerow([str(root / r["image"]), r["label"], mask, split])
    return out


def run_method(method: str, data: str, options: dict, out: Path) -> dict:
    """Train one method and score it; returns the table row."""
    from inspekt import evaluate
    from inspekt.config import TrainConfig, build_config
    from inspekt.engine.trainer import train

    cfg = build_config(
        TrainConfig,
        options={
            "task": "anomaly",
            "data": data,
            "model": method,
            "out": str(out),
            "name": method,
            **options["common"],
            **options["per_method"].get(method, {}),
        },
        overrides=options["overrides"],
    )
    t0 = time.perf_counter()
    result = train(cfg, on_epoch=lambda row: print("   ", row, flush=True))
    seconds = time.perf_counter() - t0
    scored = evaluate(result.bundle, cfg.data, split="test")
    m = scored.metrics
    row = {
        "method": method,
        "image AUROC": m["image_auroc"],
        "AUPR": m["image_aupr"],
        "F1": m["f1"],
        "pixel AUROC": m["pixel_auroc"],
        "AUPRO": m["aupro"],
        "train s": round(seconds),
        "ms/image": round(float(np.mean(scored.times)), 2),
        "notes": "; ".join(result.notes)[:80],
    }
    print("RESULT", row, flush=True)
    return row


def print_table(rows: list[dict]) -> None:
    """A markdown table of the rows."""
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        cells = [
            "-"
            if row[c] is None
            else (f"{row[c]:.4f}" if isinstance(row[c], float) and c != "ms/image" else str(row[c]))
            for c in columns
        ]
        print("| " + " | ".join(cells) + " |")


def machine() -> str:
    """The CPU (instruction sets, cores) and the 1-minute load average, for the table's header."""
    from inspekt.engine.quant_speed import cpu_flags, describe_cpu

    name = platform.processor() or platform.machine()
    return f"{name} ({describe_cpu(cpu_flags())}), {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["dice", "magnetic_tile"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--imgsz", type=int, default=None, help="input size (default: 128 dice, 256 magnetic_tile)")
    parser.add_argument("--keep", type=Path, help="keep run folders here")
    parser.add_argument("overrides", nargs="*", help="key=value passed to every training run")
    args = parser.parse_intermixed_args()
    if not (DATASETS / args.dataset).is_dir():
        sys.exit(f"{DATASETS / args.dataset} is not present")
    work = args.keep or Path(tempfile.mkdtemp(prefix="anomaly-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    per_method: dict[str, dict] = {}
    if args.dataset == "dice":
        data = str(DATASETS / "dice")
        per_method["template_ratio"] = {
            "groups": str(DATASETS / "dice" / "labels.csv"),
            "groups_column": "orientation_class",
        }
        imgsz = args.imgsz or 128
    else:
        data = str(magnetic_tile_csv(work))
        imgsz = args.imgsz or 256
    options = {
        "common": {"imgsz": imgsz, "threads": args.threads},
        "per_method": per_method,
        "overrides": args.overrides,
    }
    before = machine()
    rows = [run_method(method, data, options, work / "runs") for method in args.methods]
    print(
        f"\n{args.dataset}, {imgsz} px, {args.threads} thread(s); at start: {before}; at end: load average "
        f"{os.getloadavg()[0]:.1f}"
    )
    print_table(rows)


if __name__ == "__main__":
    main()
