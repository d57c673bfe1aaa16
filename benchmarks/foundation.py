"""Foundation figures: `data info` time and synthetic images/s.

    python benchmarks/foundation.py [--shared ../shared/datasets]

Prints figures; asserts nothing. The development datasets are used when present. Model speed
(torch vs ONNX Runtime fp32 vs INT8) and parity live in ``benchmarks/inference_speed.py``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from inspekt.data import open_dataset
from inspekt.data.info import describe
from inspekt.data.synth import write_dataset


def bench_data_info(shared: Path) -> None:
    for name in ("magnetic_tile", "dice"):
        if not (shared / name).is_dir():
            print(f"data info {name}: skipped ({shared / name} absent)")
            continue
        t0 = time.perf_counter()
        info = describe(open_dataset(shared / name))
        seconds = time.perf_counter() - t0
        print(
            f"data info {name}: {info.n_images} images, {len(info.classes)} classes, {seconds:.2f} s "
            f"({info.n_images / seconds:.0f} images/s, decode + sha256, threads = CPU count)"
        )


def bench_synth() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        summary = write_dataset(Path(tmp) / "s", n=1000, size=128, seed=0)
    print(
        f"data synth: 1000 images 128x128 (classes layout, PNG written) in {summary.seconds:.2f} s "
        f"= {1000 / summary.seconds:.0f} images/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    args = parser.parse_args()
    bench_data_info(args.shared)
    bench_synth()


if __name__ == "__main__":
    main()
