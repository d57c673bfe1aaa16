"""Training throughput: images per second of each phase of an epoch and of whole epochs.

Phases, timed on the run's own training objective (``Supervised.objective``): ``cache`` (decode and
prepare every image once), ``data`` (one epoch of augmented, normalised batches, no network),
``train step`` (forward, backward and optimiser step on those batches), ``validate`` (one pass over
the validation split). Then a real run (``inspekt.engine.trainer.train``) prints images/s per epoch
and the final validation metric. The CPU flags that matter to oneDNN are printed first.

    .venv/bin/python benchmarks/train_speed.py [--task segment] [--data DIR] [--epochs 3] [key=value ...]

Without ``--data``: classify writes a synthetic set (4 classes x 450 images at 160 px, 20 %
validation: 1,440 training images); segment uses ../shared/datasets/magnetic_tile when present,
else a synthetic segmentation set. Timings on a shared machine are noisy: repeat and take medians.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

TILE = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile"
FLAGS = ("avx2", "avx512f", "avx512_vnni", "amx_tile")


def cpu_flags() -> str:
    """Which of ``FLAGS`` the CPU has (from /proc/cpuinfo), and the logical core count."""
    import os

    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return f"unknown flags, {os.cpu_count()} cores"
    words = set(next((line for line in text.splitlines() if line.startswith("flags")), "").split())
    return " ".join(f"{f}={'yes' if f in words else 'no'}" for f in FLAGS) + f", {os.cpu_count()} cores"


def synthetic(task: str, tmp: str) -> str:
    from inspekt.data.synth import write_dataset

    layout = "classes" if task == "classify" else "segmentation"
    return str(write_dataset(Path(tmp) / "data", n=1800, size=160, seed=0, layout=layout).root)


def phases(cfg, rate) -> int:
    """Time one epoch's phases on the training objective, outside the loop; returns the training images."""
    import torch

    from inspekt.data import open_dataset
    from inspekt.engine.trainer import _configured

    task, cfg = _configured(cfg)
    t0 = time.perf_counter()
    training = task.training(cfg, open_dataset(cfg.data))
    rate("cache", len(training.train) + len(training.val), time.perf_counter() - t0)
    objective, net = training.objective()
    t0 = time.perf_counter()
    batches = list(objective.batches(1, np.random.default_rng(0)))
    rate("data", len(training.train), time.perf_counter() - t0)
    network = objective.network.to(objective.device, memory_format=torch.channels_last)  # as the loop does
    optimizer = objective.optimizer(network.parameters())
    network.train()
    t0 = time.perf_counter()
    for batch in batches:
        loss = objective.loss(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()
    rate("train step", len(training.train), time.perf_counter() - t0)
    t0 = time.perf_counter()
    objective.validate()
    rate("validate", len(training.val), time.perf_counter() - t0)
    return len(training.train)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=("classify", "segment"), default="classify")
    parser.add_argument("--data", type=Path)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("overrides", nargs="*", help="key=value config overrides")
    args = parser.parse_args()

    import torch

    from inspekt.config import TrainConfig, build_config
    from inspekt.engine.trainer import train

    print(f"CPU: {cpu_flags()}; torch {torch.__version__}, {args.threads} thread(s)", flush=True)

    def rate(what: str, n: int, seconds: float) -> None:
        print(f"  {what:<11s} {n:5d} images {seconds:7.2f} s  {n / seconds:7.0f} images/s", flush=True)

    with tempfile.TemporaryDirectory() as tmp:
        data = str(args.data) if args.data else (str(TILE) if args.task == "segment" and TILE.is_dir() else None)
        data = data or synthetic(args.task, tmp)
        options = {"task": args.task, "data": data, "out": tmp, "threads": args.threads, "epochs": args.epochs}
        cfg = build_config(TrainConfig, options={"val": 0.2} | options, overrides=args.overrides)
        print(f"data {data}; {' '.join(args.overrides) or 'default recipe'}; phases of one epoch:", flush=True)
        n_train = phases(cfg, rate)
        print("epochs (training and validation):", flush=True)
        result = train(cfg, on_epoch=lambda row: rate(f"epoch {row['epoch']}", n_train, row["seconds"]))
    per_epoch = [row["seconds"] for row in result.history]
    shown = {k: v for k, v in result.metrics.items() if k.startswith("val_")}
    print(f"median epoch {np.median(per_epoch):.2f} s; final validation {shown}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
