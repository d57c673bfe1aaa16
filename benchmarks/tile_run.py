"""What the magnetic_tile segmentation and detection benchmarks share: their command line, the seeded
stratified 80/20 split, training the benchmark's recipe (or inspekt's defaults), or taking a kept
bundle instead, and ``export --int8``'s figures. Imported by ``segment_magnetic_tile.py`` and ``detect.py``
(run from this folder)."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"


def parse_args(doc: str, defaults_help: str) -> argparse.Namespace | None:
    """The benchmarks' options; None (after saying so) when the dataset is not there."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="folder to keep the bundle (model.inspekt) and split CSV in")
    parser.add_argument("--bundle", type=Path, help="score this bundle instead of training one")
    parser.add_argument("--defaults", action="store_true", help=defaults_help)
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = parser.parse_args()
    if not args.data.is_dir():
        print(f"{args.data} is not present; this benchmark needs the development datasets", file=sys.stderr)
        return None
    return args


@dataclass
class Run:
    """The split CSV, the bundle to score, and the training run's result and wall time (None: a kept bundle)."""

    csv_path: Path
    bundle: Path
    result: object | None = None
    seconds: float | None = None


def train_or_keep(
    args: argparse.Namespace,
    tmp: str,
    task: str,
    recipe: list[str],
    on_epoch: Callable[[dict], None],
    data_settings: tuple[str, ...] = (),
) -> Run:
    """Split the data, then train ``recipe`` + the overrides (``--defaults``: ``data_settings``, what
    the data needs said, e.g. how its masks name classes, + the overrides) or take ``--bundle``;
    ``--keep`` copies a trained bundle and the split out of ``tmp``."""
    from inspekt.config import TrainConfig, build_config
    from inspekt.data import open_dataset
    from inspekt.data.split import split_dataset, write_split_csv
    from inspekt.engine.trainer import train

    split = split_dataset(open_dataset(args.data), val=0.0, test=0.2, seed=0)
    csv_path = write_split_csv(split, Path(tmp) / "split.csv")
    if args.bundle is not None:
        return Run(csv_path, args.bundle)
    chosen = list(data_settings) if args.defaults else recipe
    cfg = build_config(
        TrainConfig,
        options={"task": task, "data": str(csv_path), "out": tmp, "threads": args.threads},
        overrides=chosen + args.overrides,
    )
    print("recipe:", " ".join(chosen + args.overrides) or "inspekt's defaults", flush=True)
    t0 = time.perf_counter()
    result = train(cfg, on_epoch=on_epoch)
    seconds = time.perf_counter() - t0
    if args.keep:
        from inspekt.bundle import copy_bundle, open_bundle

        args.keep.mkdir(parents=True, exist_ok=True)
        copy_bundle(open_bundle(result.bundle), args.keep / "model.inspekt", overwrite=True)
        write_split_csv(split, args.keep / "split.csv")  # its paths are relative to where it is written
    return Run(csv_path, result.bundle, result, seconds)


def ms_per_image(scored) -> float:
    """The mean prediction time per image of an evaluation (``inspekt.evaluate``'s per-image ``times``)."""
    return sum(scored.times) / max(1, len(scored.times))


def int8_figures(bundle, csv_path: Path, out: Path, metric: str, name: str) -> None:
    """``export --int8`` (calibrated on the training split, judged on the test split) at the default limits, as
    users run it; when that refuses, again with every limit off (the fastest recipe then is always written), to
    measure it. Then the INT8 bundle scored like the fp32 one: its ``metric`` (printed as ``name``) and ms/image."""
    from inspekt.engine.evaluator import evaluate
    from inspekt.engine.quantize import Int8Refused, quantize_bundle

    t0 = time.perf_counter()
    try:
        report = quantize_bundle(bundle, out, calib=csv_path)
    except Int8Refused as refused:
        print(f"export --int8 at the default limits refused it ({time.perf_counter() - t0:.0f} s): {refused}")
        t0 = time.perf_counter()
        report = quantize_bundle(bundle, out, calib=csv_path, max_drop=1.0, min_agreement=0.0, min_speedup=0.0)
        print("again with every limit off:")
    print(f"export --int8 ({time.perf_counter() - t0:.0f} s):\n{report.summary()}")
    scored = evaluate(report.path, csv_path, split="test", batch_size=8)
    print(f"INT8 bundle: {name} {scored.metrics[metric]:.4f}, {ms_per_image(scored):.1f} ms/image (ONNX Runtime int8)")
