"""Foundation figures: `data info` time, synthetic images/s, Predictor ONNX vs torch parity and speed.

    python benchmarks/foundation.py [--shared ../shared/datasets] [--workspace workspace]

Prints figures; asserts nothing. The development datasets are used when present.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from inspekt.data import open_dataset
from inspekt.data.info import describe
from inspekt.data.synth import write_dataset
from inspekt.demo import build_demo
from inspekt.io import list_images, load_image
from inspekt.predictor import Predictor


def bench_data_info(shared: Path) -> None:
    for name in ("magnetic_tile", "dice"):
        if not (shared / name).is_dir():
            print(f"data info {name}: skipped ({shared / name} absent)")
            continue
        t0 = time.perf_counter()
        info = describe(open_dataset(shared / name))
        seconds = time.perf_counter() - t0
        print(f"data info {name}: {info.n_images} images, {len(info.classes)} classes, {seconds:.2f} s "
              f"({info.n_images / seconds:.0f} images/s, decode + sha256, threads = CPU count)")


def bench_synth() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        summary = write_dataset(Path(tmp) / "s", n=1000, size=128, seed=0)
    print(f"data synth: 1000 images 128x128 (classes layout, PNG written) in {summary.seconds:.2f} s "
          f"= {1000 / summary.seconds:.0f} images/s")


def _rate(predictor: Predictor, images: list[np.ndarray], batch: int, repeats: int = 3) -> float:
    predictor.batch_size = batch
    predictor.predict_arrays(images[:batch])  # warm-up
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        predictor.predict_arrays(images)
        best = max(best, len(images) / (time.perf_counter() - t0))
    return best


def bench_predictor(workspace: Path) -> None:
    ws = build_demo(workspace)
    images = [load_image(p, mode="keep") for p in list_images(ws.datasets["surfaces"])[:256]]
    onnx, torch_ = Predictor.load(ws.model, backend="onnx"), Predictor.load(ws.model, backend="torch")
    a, b = onnx.predict_arrays(images), torch_.predict_arrays(images)
    diff = max(abs(x.scores[c] - y.scores[c]) for x, y in zip(a, b) for c in x.scores)
    agree = np.mean([x.label == y.label for x, y in zip(a, b)])
    print(f"parity on {len(images)} demo images: max |prob diff| ONNX vs torch {diff:.2e}, labels agree {agree:.1%}")
    for batch in (1, 16):
        r_onnx, r_torch = _rate(onnx, images, batch), _rate(torch_, images, batch)
        print(f"batch {batch:2d}: ONNX Runtime {r_onnx:7.0f} images/s, torch eager {r_torch:7.0f} images/s "
              f"({r_onnx / r_torch:.2f}x), input {onnx.card.input.size}, incl. preprocessing")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    parser.add_argument("--workspace", type=Path, default=Path("workspace"))
    args = parser.parse_args()
    bench_data_info(args.shared)
    bench_synth()
    bench_predictor(args.workspace)


if __name__ == "__main__":
    main()
