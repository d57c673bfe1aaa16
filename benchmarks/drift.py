"""Drift checks on the development datasets: calibration, power and profiling speed.

    .venv/bin/python benchmarks/drift.py calibration [--trials 100] [--datasets magnetic_tile dice]
    .venv/bin/python benchmarks/drift.py power [--trials 20] [--datasets magnetic_tile]
    .venv/bin/python benchmarks/drift.py speed [--workers 1 2]

calibration: random same-distribution splits (n images per side, disjoint, drawn without
    replacement from the whole dataset); the share of trials where inspekt says "Drift detected" at
    alpha 0.05, beside the share where the fixed rule "pixel-histogram KL(ref||cur) > 0.05" fires.
power: the reference side is n random images, the current side n other images transformed
    (brightness +10/+20/+40, Gaussian blur sigma 1/2, downscale x0.5, JPEG quality 30, grey->colour
    tint); both sides are re-encoded as JPEG quality 95 (JPEG 30 for that row), and an identity row
    (re-encoded only) is the control. Prints the detection rate per transform and n.
speed: images/s of inspekt's profiling vs decoding alone (OpenCV imread, full resolution) on the same
    files with the same number of processes, measured side by side; the development datasets are
    grey, so a made set of 600 colour JPEGs (640 x 480) is measured too.

Single-image profiles are computed once per file and combined with ``Profile.concat`` (exactly the
profile of the union), so a trial costs only the statistics.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
SIZES = (50, 200, 1000)
TRANSFORMS = (
    "identity",
    "brightness+10",
    "brightness+20",
    "brightness+40",
    "blur1",
    "blur2",
    "downscale0.5",
    "jpeg30",
    "tint",
)


def dataset_files(name: str) -> list[str]:
    files = sorted(
        str(p)
        for p in (DATA / name).rglob("*")
        if p.suffix.lower() in (".jpg", ".png")
        and "masks" not in p.parts
        and "ground_truth" not in p.parts
        and not p.stem.endswith("_mask")
    )
    if not files:
        sys.exit(f"{DATA / name} is not present; this benchmark needs the development datasets")
    return files


def population(name: str, size: int) -> list[str]:
    """A seeded random ``size`` of the dataset's images (all when it has fewer)."""
    files = dataset_files(name)
    if len(files) <= size:
        return files
    return [files[i] for i in sorted(np.random.default_rng(0).choice(len(files), size, replace=False))]


def single_profiles(files: list[str]) -> list:
    from inspekt.profiling.profile import profile_chunk

    out = []
    for f in files:
        p = profile_chunk([f])
        if len(p):
            out.append(p)
    return out


def concat(profiles: list, index) -> object:
    from inspekt.profiling.profile import Profile

    return Profile.concat([profiles[i] for i in index])


def sizes_for(population: int) -> list[int]:
    """The sizes of ``SIZES`` the dataset can fill twice without replacement, plus its largest such
    size in hundreds when it cannot fill the largest (magnetic_tile: 600)."""
    sizes = [n for n in SIZES if 2 * n <= population]
    largest = population // 200 * 100
    return sizes + [largest] if len(sizes) < len(SIZES) and largest not in sizes and largest > 0 else sizes


def calibration(args) -> None:
    from inspekt.drift.engine import compare_profiles
    from inspekt.drift.types import DriftConfig

    print("dataset        n/side  trials  inspekt false alarms  KL>0.05 rule fires  s/trial")
    for name in args.datasets:
        profiles = single_profiles(population(name, args.population))
        for n in sizes_for(len(profiles)):
            trials, alarms, kl_rule, seconds = args.trials, 0, 0, 0.0
            rng = np.random.default_rng(n)
            for t in range(trials):
                idx = rng.choice(len(profiles), 2 * n, replace=False)
                ref, cur = concat(profiles, idx[:n]), concat(profiles, idx[n:])
                t0 = time.perf_counter()
                result = compare_profiles(ref, cur, DriftConfig(seed=t, kl_threshold=0.05))
                seconds += time.perf_counter() - t0
                alarms += result.drift
                kl_rule += any(c.details.get("kl_rule_fires") for c in result.checks)
            print(
                f"{name:14s} {n:6d}  {trials:6d}  {alarms / trials:20.1%}  {kl_rule / trials:18.1%}  "
                f"{seconds / trials:7.2f}",
                flush=True,
            )


def _transform(image: np.ndarray, name: str) -> tuple[np.ndarray, int]:
    import cv2

    if name.startswith("brightness"):
        return np.clip(image.astype(np.int16) + int(name[len("brightness+") :]), 0, 255).astype(np.uint8), 95
    if name.startswith("blur"):
        return cv2.GaussianBlur(image, (0, 0), float(name[4:])), 95
    if name == "downscale0.5":
        h, w = image.shape[:2]
        return cv2.resize(image, (max(1, w // 2), max(1, h // 2)), interpolation=cv2.INTER_AREA), 95
    if name == "jpeg30":
        return image, 30
    if name == "tint":
        grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        bgr = np.dstack([grey * 0.92, grey * 1.0, grey * 1.08])  # OpenCV writes BGR: a warm tint
        return np.clip(bgr, 0, 255).astype(np.uint8), 95
    return image, 95


def _variant_files(files: list[str], name: str, folder: Path) -> list[str]:
    import cv2

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, f in enumerate(files):
        image, quality = _transform(cv2.imread(f, cv2.IMREAD_UNCHANGED), name)
        path = folder / f"{i:05d}.jpg"
        cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out.append(str(path))
    return out


def power(args) -> None:
    from inspekt.drift.engine import compare_profiles
    from inspekt.drift.types import DriftConfig

    for name in args.datasets:
        files = population(name, args.population)
        with tempfile.TemporaryDirectory() as tmp:
            variants = {t: single_profiles(_variant_files(files, t, Path(tmp) / t)) for t in TRANSFORMS}
        sizes = sizes_for(len(files))
        print(f"\n{name}: detection rate at alpha 0.05 ({args.trials} trials per cell; n = images per side)")
        print(f"{'transform':15s}" + "".join(f"  n={n:<6d}" for n in sizes) + "  most often drifted check")
        for t in TRANSFORMS:
            rates, named = [], {}
            for n in sizes:
                trials = args.trials if n < 500 else max(5, args.trials // 3)
                rng, hits = np.random.default_rng(n), 0
                for k in range(trials):
                    idx = rng.choice(len(files), 2 * n, replace=False)
                    result = compare_profiles(
                        concat(variants["identity"], idx[:n]), concat(variants[t], idx[n:]), DriftConfig(seed=k)
                    )
                    hits += result.drift
                    for c in result.drifted[:1]:
                        named[c.name] = named.get(c.name, 0) + 1
                rates.append(hits / trials)
            top = max(named, key=named.get) if named else "-"
            print(f"{t:15s}" + "".join(f"  {r:8.0%}" for r in rates) + f"  {top}", flush=True)


def _decode(files: list[str]) -> int:
    import cv2

    cv2.setNumThreads(1)
    return sum(cv2.imread(f, cv2.IMREAD_UNCHANGED) is not None for f in files)


def _colour_files(folder: Path, count: int = 600) -> list[str]:
    """Colour JPEGs (480 x 640, smooth random colour fields with noise): no colour dataset is at hand."""
    import cv2

    rng, files = np.random.default_rng(0), []
    for i in range(count):
        field = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (640, 480), interpolation=cv2.INTER_CUBIC)
        image = np.clip(field + rng.normal(0, 4, field.shape), 0, 255).astype(np.uint8)
        files.append(str(folder / f"{i:04d}.jpg"))
        cv2.imwrite(files[-1], image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    return files


def speed(args) -> None:
    from inspekt.profiling.profile import profile_images

    print("dataset        images  workers  decode-only img/s  profile img/s  ratio")
    with tempfile.TemporaryDirectory() as tmp:
        sets = [
            (name, sorted(str(p) for p in (DATA / name).glob(pattern)))
            for name, pattern in (("magnetic_tile", "images/Free/*.jpg"), ("dice", "*/*/*.jpg"))
        ]
        for name, files in sets + [("colour (made)", _colour_files(Path(tmp)))]:
            if files:
                _speed_rows(name, files, args, profile_images)


def _speed_rows(name: str, files: list[str], args, profile_images) -> None:
    """One row per worker count: best of ``args.repeats`` alternating runs of each."""
    for workers in args.workers:
        chunks = [files[i::workers] for i in range(workers)]
        best_decode = best_profile = 0.0
        for _ in range(args.repeats):  # alternate, keep the best of each: same conditions for both
            t0 = time.perf_counter()
            if workers == 1:
                _decode(files)
            else:
                with ProcessPoolExecutor(workers) as pool:
                    sum(pool.map(_decode, chunks))
            best_decode = max(best_decode, len(files) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            profile_images(files, workers=workers)
            best_profile = max(best_profile, len(files) / (time.perf_counter() - t0))
        print(
            f"{name:14s} {len(files):6d}  {workers:7d}  {best_decode:17.0f}  {best_profile:13.0f}  "
            f"{best_profile / best_decode:5.2f}",
            flush=True,
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=("calibration", "power", "speed"))
    parser.add_argument("--datasets", nargs="+", default=["magnetic_tile", "dice"])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--population", type=int, default=2400, help="images used per dataset (a seeded random sample)")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    {"calibration": calibration, "power": power, "speed": speed}[args.mode](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
