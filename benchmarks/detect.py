"""Detection quality, training time, speed and ONNX/torch parity on ../shared/datasets/magnetic_tile
read as a detection dataset: one box per connected region of each mask, classed by the image's
defect type (``masks=folder``; ``Free`` images are negatives).

A stratified 80/20 split with seed 0 (``inspekt.data.split``); the 80 % trains (its own seeded 10 %
picks the best epoch and calibrates the score threshold), the 20 % is scored with ``inspekt.evaluate``
(COCOeval) through the Predictor at the original image size. Prints mAP@0.5 per defect type and
overall, mAP@0.5:0.95, box and any-defect precision / recall at the card's threshold, training time,
ms/image of the ONNX fp32 graph, ONNX vs torch boxes on the test images (IoU, scores), and INT8:
``export --int8``'s own figures (mAP@0.5 and box F1 of both graphs on the test images, box agreement,
speed ratios on this CPU, the recipe it kept; when the default limits refuse it, written again with every
limit off, to measure it) and the INT8 bundle's mAP and ms/image through the Predictor.

    .venv/bin/python benchmarks/detect.py [--threads 2] [--keep DIR] [key=value ...]
    .venv/bin/python benchmarks/detect.py --bundle DIR/model.inspekt   # score a kept model
    .venv/bin/python benchmarks/detect.py --defaults   # what plain `inspekt train detect` gives

Timings are wall-clock on whatever else the machine runs: the script prints ``os.getloadavg()`` and
the CPU time the process itself used (user + system, all threads), which a loaded machine does not
inflate.
"""

from __future__ import annotations

import os
import resource
import sys
import tempfile
from pathlib import Path

import numpy as np

from tile_run import int8_figures, ms_per_image, parse_args, train_or_keep

# The recipe: the built-in CenterNet from scratch on 128-pixel windows of the image at 3/4 size
# (tiled, as segmentation), grey input with CLAHE, defect-free and defective images drawn equally
# often, most crops holding a box's centre, and the score threshold calibrated on validation (best
# box F1). Sized for a 2-core CPU.
RECIPE = [
    "model=tiny_centernet",
    "model_params.width=8",
    "model_params.neck=32",
    "masks=folder",
    "channels=1",
    "resize=tile",
    "scale=0.75",
    "imgsz=128",
    "clahe=2.0",
    "epochs=40",  # 267 s on an idle 2-core EPYC; validation mAP still rose at epoch 35 (12 epochs: 0.017)
    "batch=16",
    "lr=0.004",
    "augment=light",
    "flips=both",
    "val=0.1",
    "patience=100",
    "defect_crops=0.8",
    "sampler=balanced",
    "threshold=auto",
]


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _report(scored, seconds: float | None, cpu: float | None) -> None:
    m = scored.metrics
    print(f"test images {m['n_images']} ({m['n_defective']} with boxes), skipped {len(scored.skipped)}")
    print(f"mAP@0.5 {m['map50']:.4f}  mAP@0.5:0.95 {m['map50_95']:.4f}  (COCOeval, all defect types)")
    print("AP@0.5 per defect type:")
    for row in m["per_class"]:
        ap50 = "-" if row["ap50"] is None else f"{row['ap50']:.4f}"
        ap = "-" if row["ap"] is None else f"{row['ap']:.4f}"
        print(f"  {row['class']:10s} AP@0.5 {ap50}  AP@0.5:0.95 {ap}  ({row['boxes']} true boxes)")
    fmt = lambda v: "-" if v is None else f"{v:.4f}"  # noqa: E731
    print(
        f"at the card's score threshold {scored.threshold:.3f}: box precision {fmt(m['box_precision'])} "
        f"recall {fmt(m['box_recall'])}; any-defect image precision {fmt(m['image_precision'])} "
        f"recall {fmt(m['image_recall'])}; mean count error {fmt(m['count_mae'])} per image"
    )
    ms = ms_per_image(scored)
    print(f"inference {ms:.1f} ms/image (ONNX Runtime fp32, original size, tiled as the card says)")
    if seconds is not None:
        print(f"training {seconds:.0f} s wall, {cpu:.0f} s CPU (user + system, all threads)")


PARITY_THRESHOLD = 0.05  # compare every box down to this score, not only those the card's threshold keeps


def _parity(bundle, paths: list[str]) -> None:
    """ONNX vs torch boxes on the same images, down to ``PARITY_THRESHOLD``: each ONNX box with the
    torch box of its class that overlaps it most; scores as the JSON gives them (6 decimals)."""
    from inspekt.engine.predictor import Predictor
    from inspekt.tasks.detect.boxes import iou_matrix

    onnx = Predictor.load(bundle, batch_size=8, threshold=PARITY_THRESHOLD).predict(paths)
    torch_ = Predictor.load(bundle, backend="torch", batch_size=8, threshold=PARITY_THRESHOLD).predict(paths)
    worst_iou, worst_rel, differ, boxes = 1.0, 0.0, 0, 0
    for a, b in zip(onnx, torch_):
        if sorted(x["class"] for x in a.boxes) != sorted(x["class"] for x in b.boxes):
            differ += 1
            continue
        if not a.boxes:
            continue
        boxes += len(a.boxes)
        # each ONNX box against the torch boxes of its class (equal scores may come in either order)
        overlap = iou_matrix(np.array([x["box"] for x in a.boxes]), np.array([y["box"] for y in b.boxes]))
        same = np.array([[x["class"] == y["class"] for y in b.boxes] for x in a.boxes])
        best = np.where(same, overlap, -1).argmax(axis=1)
        worst_iou = min(worst_iou, float(overlap[np.arange(len(best)), best].min()))
        for x, j in zip(a.boxes, best):
            y = b.boxes[j]["score"]
            worst_rel = max(worst_rel, abs(x["score"] - y) / max(abs(y), 1e-12))
    print(
        f"parity on {len(paths)} test images, {boxes} boxes scoring >= {PARITY_THRESHOLD}: images whose boxes "
        f"differ {differ}; "
        f"lowest ONNX-torch IoU {worst_iou:.6f}; largest relative score difference {worst_rel:.2e}"
    )


def main() -> int:
    args = parse_args(__doc__, "train with inspekt's defaults (only masks=folder, which names the classes) instead")
    if args is None:
        return 1
    from inspekt.engine.evaluator import evaluate

    print(f"load average at start {os.getloadavg()}, {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        c0 = _cpu_seconds()
        run = train_or_keep(
            args,
            tmp,
            "detect",
            RECIPE,
            on_epoch=lambda r: print(
                f"  epoch {r['epoch']:3d}  loss {r['train_loss']:.3f}  val mAP@0.5 {r.get('val_map50', 0):.3f}  "
                f"{r['seconds']:.0f}s (CPU so far {_cpu_seconds():.0f}s)",
                flush=True,
            ),
            data_settings=("masks=folder",),
        )
        cpu = None if run.result is None else _cpu_seconds() - c0
        if run.result is not None:
            parity = run.result.parity
            print(f"ONNX parity at export: max |diff| {parity.max_abs_diff:.2e} ({parity.n_inputs} inputs)")
        scored = evaluate(run.bundle, run.csv_path, split="test", batch_size=8)
        _report(scored, run.seconds, cpu)
        _parity(run.bundle, [row["path"] for row in scored.rows])
        int8_figures(run.bundle, run.csv_path, Path(tmp) / "int8.inspekt", "map50", "mAP@0.5")
    print(f"load average at end {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
