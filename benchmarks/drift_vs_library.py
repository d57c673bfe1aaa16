"""One-shot drift check, whole processes: ``inspekt drift`` against deepchecks' vision property drift and
dataset (domain classifier) drift on the same two folders (issue 20, item 4).

deepchecks is not a dependency of inspekt; install it in a virtualenv of its own (its torchvision needs
inspekt's torchvision workaround on CPU-only torch, which the driver below loads from this checkout):

    python3 -m venv /tmp/dcvenv
    /tmp/dcvenv/bin/pip install torch==2.13.0 torchvision==0.28.0 "deepchecks[vision]==0.19.1" \\
        scikit-learn==1.6.1 "setuptools<81"
    .venv/bin/python benchmarks/drift_vs_library.py --python /tmp/dcvenv/bin/python [--repeats 3]

Pairs (each folder against itself, so both tools read every file twice and find no drift):
magnetic_tile ``images/Free`` (952 images of ~400 x 300 grey JPEG a side) and dice ``train/good``
(5,904 128 x 128 grey JPEGs a side, 11,808 in all). Prints the median wall time of each tool over
``--repeats`` runs and the ratio, with the CPU's instruction sets.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from train_speed import cpu_flags

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets"
PAIRS = {"magnetic_tile": DATA / "magnetic_tile" / "images" / "Free", "dice": DATA / "dice" / "train" / "good"}
COMPAT = Path(__file__).resolve().parents[1] / "src" / "inspekt" / "_compat.py"

# The other library's side: decode with OpenCV in batches of 64 (its loader contract), then its two checks
# with their default settings.
DRIVER = """
import importlib.util, glob, os, sys
spec = importlib.util.spec_from_file_location("compat", sys.argv[3])
compat = importlib.util.module_from_spec(spec)
spec.loader.exec_module(compat)
compat.apply()
import cv2
from deepchecks.vision import VisionData
from deepchecks.vision.checks import ImageDatasetDrift, ImagePropertyDrift

def files(folder):
    found = glob.glob(os.path.join(folder, "**", "*"), recursive=True)
    return sorted(p for p in found if p.lower().endswith((".png", ".jpg", ".jpeg", ".bmp")))

class Loader:
    def __init__(self, paths, batch=64):
        self.paths, self.batch = paths, batch
    def __iter__(self):
        for start in range(0, len(self.paths), self.batch):
            chunk = self.paths[start:start + self.batch]
            yield {"images": [cv2.cvtColor(cv2.imread(p, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB) for p in chunk]}
    def __len__(self):
        return (len(self.paths) + self.batch - 1) // self.batch

reference = VisionData(Loader(files(sys.argv[1])), task_type="other", reshuffle_data=False)
current = VisionData(Loader(files(sys.argv[2])), task_type="other", reshuffle_data=False)
for check in (ImagePropertyDrift(), ImageDatasetDrift()):
    check.run(reference, current)
"""


def wall(command: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(command[:3])} ... failed:\n{proc.stderr[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--python", required=True, help="the interpreter of the virtualenv with deepchecks[vision]")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pairs", nargs="+", choices=sorted(PAIRS), default=sorted(PAIRS))
    args = parser.parse_args()
    inspekt = str(Path(sys.executable).with_name("inspekt"))
    print(f"CPU: {cpu_flags()}")
    with tempfile.TemporaryDirectory() as tmp:
        driver = Path(tmp) / "other.py"
        driver.write_text(DRIVER)
        for name in args.pairs:
            folder = PAIRS[name]
            if not folder.is_dir():
                print(f"{folder} is not present; this benchmark needs the development datasets", file=sys.stderr)
                return 1
            ours, theirs = [], []
            for _ in range(args.repeats):  # interleaved, so a busy spell slows both
                ours.append(wall([inspekt, "drift", str(folder), str(folder), "--json", f"{tmp}/r.json"]))
                theirs.append(wall([args.python, "-W", "ignore", str(driver), str(folder), str(folder), str(COMPAT)]))
            a, b = statistics.median(ours), statistics.median(theirs)
            print(
                f"{name:14s} inspekt drift {a:6.2f} s   deepchecks property+dataset drift {b:6.2f} s   "
                f"ratio {b / a:5.2f}x   (median of {args.repeats}; runs {', '.join(f'{s:.2f}' for s in ours)} / "
                f"{', '.join(f'{s:.2f}' for s in theirs)})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
