"""Inference speed and accuracy: torch eager vs ONNX Runtime fp32 vs ONNX Runtime INT8, side by side.

    python benchmarks/inference_speed.py BUNDLE --data DATA [--int8 INT8_BUNDLE] [--threads 2]
                                         [--images 128] [--repeats 5]

DATA is a labelled dataset (folder or CSV); its val/test images are used when it has them (the
same choice as ``inspekt export --int8``). Without ``--int8`` the bundle is quantised here,
calibrated on DATA. All three runners get the same preprocessed batches (preprocessing is done
once, so the rates are model time only), the same thread count, a warm-up, and the median of
``--repeats`` timed passes, taken in turns. Prints figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from inspekt.bundle import ONNX, open_bundle
from inspekt.data import open_dataset
from inspekt.engine.predictor import Predictor, task_of
from inspekt.engine.quant_speed import cpu_flags, describe_cpu
from inspekt.engine.quantize import Recorder, pick_images, quantize_bundle
from inspekt.models.runtime import OnnxBackend, TorchBackend
from inspekt.results import BatchReport

BATCHES = (1, 16)


def images_per_second(runners: dict, x: np.ndarray, batch: int, repeats: int) -> dict[str, float]:
    """Median images/s of each runner over ``repeats`` passes through ``x`` in chunks of ``batch``.

    Each runner is timed in its own block after its own warm-up: interleaving them lets one
    runtime's spinning worker threads steal the two cores from the next one.
    """
    rates: dict[str, float] = {}
    for name, run in runners.items():
        for start in range(0, min(len(x), 2 * batch), batch):  # warm-up: allocations, kernel choice
            run(x[start : start + batch])
        found = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            for start in range(0, len(x), batch):
                run(x[start : start + batch])
            found.append(len(x) / (time.perf_counter() - t0))
        rates[name] = statistics.median(found)
        time.sleep(0.5)  # let this runner's worker threads go idle before the next one
    return rates


def load_inputs(bundle, data: Path, n_images: int) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation images of ``data`` (at most ``n_images``, evenly chosen) as the model sees them,
    preprocessed by the Predictor, and their class indices."""
    card, task = bundle.card, task_of(bundle)
    _, evaluation = pick_images(open_dataset(data), task, card, n_calib=n_images)
    samples = list(evaluation.samples)
    if len(samples) > n_images:
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, n_images).round().astype(int)]
    recorder, report = Recorder(OnnxBackend(bundle), limit=len(samples)), BatchReport()
    predictor = Predictor(bundle, recorder, 1, task)
    kept = [s for s in samples if predictor.predict(s.path, report=report)]  # one by one: skipped files drop out
    if report.skipped:
        print(report.summary())
    return np.stack(recorder.rows), np.array([card.classes.index(s.label) for s in kept])


def int8_bundle(fp32, given: Path | None, data: Path, workdir: Path):
    """The INT8 bundle: the one given (checked to be the same model), or ``fp32`` quantised on ``data``
    (never refused here)."""
    if given is not None:
        opened = open_bundle(given)
        if opened.card.precision != "int8":
            raise SystemExit(f"{given}: card precision is {opened.card.precision}, not int8")
        if (opened.card.input, opened.card.classes) != (fp32.card.input, fp32.card.classes):
            raise SystemExit(f"{given}: input or classes differ from {fp32.path}; give the INT8 bundle of this model")
        return opened
    report = quantize_bundle(fp32, workdir / "int8.inspekt", calib=data, max_drop=1.0, min_agreement=0, min_speedup=0)
    print(f"quantised here as {report.recipe} (calibrated on {report.n_calib} images of {data}); {report.speed_line()}")
    return open_bundle(report.path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--data", type=Path, required=True, help="labelled dataset folder or CSV")
    parser.add_argument("--int8", type=Path, help="an INT8 bundle of the same model (default: quantise here)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads for every runner")
    parser.add_argument("--images", type=int, default=128, help="most images timed and scored")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per figure (median)")
    args = parser.parse_args()

    fp32 = open_bundle(args.bundle)
    x, truth = load_inputs(fp32, args.data, args.images)
    with tempfile.TemporaryDirectory() as tmp:
        int8 = int8_bundle(fp32, args.int8, args.data, Path(tmp))
        output = fp32.card.outputs[0]
        runners = {
            "torch eager": TorchBackend(fp32, args.threads),
            "ORT fp32": OnnxBackend(fp32, args.threads),
            "ORT int8": OnnxBackend(int8, args.threads),
        }
        logits = {name: r.run(x)[output] for name, r in runners.items()}
        runs = {name: runner.run for name, runner in runners.items()}
        by_batch = {b: images_per_second(runs, x, b, args.repeats) for b in BATCHES}
        rates = {name: {b: by_batch[b][name] for b in BATCHES} for name in runners}
        int8_mb = len(int8.read(ONNX)) / 1e6  # read while the bundle quantised here still exists

    card = fp32.card
    print(
        f"{card.architecture} {card.params}, input {card.input.channels}x{card.input.size[0]}x{card.input.size[1]}, "
        f"{len(x)} images of {args.data}, {args.threads} threads, {platform.processor() or platform.machine()} "
        f"({describe_cpu(cpu_flags())}), "
        f"median of {args.repeats}; model.onnx {len(fp32.read(ONNX)) / 1e6:.2f} MB fp32, "
        f"{int8_mb:.2f} MB int8"
    )
    print(f"{'runner':12s} " + " ".join(f"{f'batch {b} img/s':>15s}" for b in BATCHES) + f" {'accuracy':>9s}")
    for name in runners:
        accuracy = float(np.mean(logits[name].argmax(1) == truth))
        print(f"{name:12s} " + " ".join(f"{rates[name][b]:15.1f}" for b in BATCHES) + f" {accuracy:9.4f}")
    for top, bottom in (("ORT fp32", "torch eager"), ("ORT int8", "ORT fp32")):
        ratios = ", ".join(f"batch {b} {rates[top][b] / rates[bottom][b]:.2f}x" for b in BATCHES)
        print(f"{top} / {bottom}: {ratios}")
    diff = float(np.max(np.abs(logits["ORT fp32"] - logits["torch eager"])))
    agree = float(np.mean(logits["ORT int8"].argmax(1) == logits["ORT fp32"].argmax(1)))
    print(f"ORT fp32 vs torch: max |logit diff| {diff:.2e}; int8 vs fp32: labels agree on {agree:.1%}")


if __name__ == "__main__":
    main()
