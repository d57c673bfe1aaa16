"""How well ``inspekt data issues`` finds planted label noise on ../shared/datasets/magnetic_tile.

For each noise level (5 % and 10 % by default), a seeded random share of the 1,344 labels is
flipped to another class chosen at random (seed 0). ``find_issues`` cross-validates its small
recipe on the noisy labels; the script prints how many flipped images are among the top 5 / 10 /
15 % of its ranking (precision and recall), both for the label rows of the merged issue list (what
the user sees; it holds only the images cleanlab flags) and for cleanlab's whole ranking of every
image, and the wall time.

Then, on one stratified 80/20 split (seed 0), one model is trained per label set with the same
recipe and scored on the clean test labels: trained on the noisy labels, on the noisy labels with
every flagged training image relabelled to cleanlab's suggestion (a stand-in for a person), and on
the clean labels.

    nice -n 10 .venv/bin/python benchmarks/label_issues.py [--noise 0.05 0.10] [--folds 4]
        [--accuracy-epochs 20] [key=value ...]

Extra ``key=value`` items change the cross-validation recipe (``inspekt.curate.predictions.RECIPE``).
"""

from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "magnetic_tile" / "labels.csv"
TOPS = (0.05, 0.10, 0.15)


def cpu_flags() -> str:
    """The instruction-set flags that matter for CPU training speed, and the CPU model."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "?")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    wanted = [f for f in ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile") if f in flags]
    return f"{model}; {os.cpu_count()} cores; flags {' '.join(wanted)}"


def load() -> tuple[list[str], list[str], list[str], list[str]]:
    """(paths, labels, masks, classes) of magnetic_tile, paths absolute."""
    from inspekt.data import open_dataset

    ds = open_dataset(DATA)
    return (
        [str(s.path.resolve()) for s in ds.samples],
        [s.label for s in ds.samples],
        [str(s.mask.resolve()) if s.mask else "" for s in ds.samples],
        list(ds.classes),
    )


def flip(labels: list[str], classes: list[str], share: float, seed: int = 0) -> tuple[list[str], set[int]]:
    """``labels`` with ``share`` of them flipped to another class at random; and which were flipped."""
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(labels), size=round(share * len(labels)), replace=False)
    noisy = list(labels)
    for i in chosen:
        noisy[i] = str(rng.choice([c for c in classes if c != labels[i]]))
    return noisy, {int(i) for i in chosen}


def write_csv(path: Path, paths: list[str], labels: list[str], masks: list[str], splits: list[str]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(("path", "label", "mask", "split"))
        writer.writerows(zip(paths, labels, masks, splits))
    return path


def precision_recall(order: list[str], planted: set[str], n: int) -> list[str]:
    """'top 5 %: precision p, recall r' lines of a ranking (of image paths) against the planted ones."""
    lines = []
    for top in TOPS:
        k = round(top * n)
        hits = len(set(order[:k]) & planted)
        shown = min(k, len(order))
        precision = hits / shown if shown else float("nan")
        lines.append(
            f"  top {top:4.0%} ({k:4d} images, {shown:4d} listed): precision {precision:.3f}  "
            f"recall {hits / len(planted):.3f}"
        )
    return lines


def judge(paths, noisy, masks, planted_idx, args, work: Path) -> dict:
    """Run find_issues on the noisy labels and print its precision and recall."""
    from inspekt.curate import find_issues

    data = write_csv(work / "noisy.csv", paths, noisy, masks, [""] * len(paths))
    t0 = time.perf_counter()
    report = find_issues(data, folds=args.folds, overrides=args.overrides, seed=0)
    seconds = time.perf_counter() - t0
    planted = {paths[i] for i in planted_idx}
    resolve = lambda p: str(Path(p).resolve())  # noqa: E731
    listed = [resolve(i.path) for i in report.issues if i.kind == "label"]
    ranking = [resolve(p) for p in report.label_ranking.paths]
    flagged = set(listed)
    print(f"data issues: {seconds:.0f} s wall ({seconds / 60:.1f} min), load {os.getloadavg()[0]:.1f}; {report.model}")
    print(f"  out-of-sample agreement with the noisy labels: {report.summary}")
    print(
        f"  flagged {len(flagged)} label issues: precision {len(flagged & planted) / max(1, len(flagged)):.3f}, "
        f"recall {len(flagged & planted) / len(planted):.3f}; issues of all kinds: {report.counts()}"
    )
    print("  label rows of the issue list, in rank order:")
    print("\n".join(precision_recall(listed, planted, len(paths))))
    if args.save:
        rk, truth = report.label_ranking, dict(zip(paths, args.clean))
        np.savez_compressed(
            f"{args.save}{len(planted_idx)}.npz",
            paths=np.array(ranking), probs=rk.probs, given=np.array(rk.given), flagged=rk.flagged,
            truth=np.array([truth[p] for p in ranking]), planted=np.array([p in planted for p in ranking]),
        )  # fmt: skip
    print("  cleanlab's whole ranking (flagged first, then by label quality):")
    print("\n".join(precision_recall(ranking, planted, len(paths))), flush=True)
    return {resolve(i.path): i.suggested for i in report.issues if i.kind == "label"}


def accuracy(paths, labels, masks, splits, args, work: Path, name: str) -> str:
    """Train the accuracy recipe on ``labels`` (train split) and score it on the clean test labels."""
    from inspekt.config import TrainConfig, build_config
    from inspekt.curate.predictions import RECIPE
    from inspekt.engine.evaluator import evaluate
    from inspekt.engine.trainer import train

    data = write_csv(work / f"{name}.csv", paths, labels, masks, splits)
    options = {"task": "classify", "data": str(data), "out": str(work / "runs"), "name": name, "seed": 0}
    options |= RECIPE
    overrides = [*args.overrides, f"epochs={args.accuracy_epochs}"]  # the recipe, trained longer
    cfg = build_config(TrainConfig, options=options, overrides=overrides)
    t0 = time.perf_counter()
    result = train(cfg)
    clean = write_csv(work / "clean_test.csv", paths, args.clean, masks, splits)
    metrics = evaluate(result.bundle, clean, split="test").metrics
    return (
        f"  {name:28s} accuracy {metrics['accuracy']:.4f}  macro-F1 {metrics['macro_f1']:.4f}  "
        f"({time.perf_counter() - t0:.0f} s)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--noise", type=float, nargs="+", default=[0.05, 0.10])
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--accuracy-epochs", type=int, default=20, help="epochs of the accuracy comparison's models")
    parser.add_argument("--no-accuracy", action="store_true", help="only measure the ranking")
    parser.add_argument("--save", help="save each noise level's out-of-sample probabilities to PREFIX<n>.npz")
    parser.add_argument("overrides", nargs="*", help="key=value changes to the cross-validation recipe")
    args = parser.parse_args()
    if not DATA.is_file():
        print(f"{DATA} is not present; this benchmark needs the development datasets", file=sys.stderr)
        return 1
    from inspekt.curate.predictions import RECIPE
    from inspekt.data import open_dataset
    from inspekt.data.split import split_dataset

    logging.basicConfig(level=logging.INFO, format="    %(message)s", stream=sys.stderr)  # the library's progress
    print("cpu:", cpu_flags())
    print("recipe per fold:", RECIPE, "overrides:", args.overrides, "folds:", args.folds, flush=True)
    paths, labels, masks, classes = load()
    args.clean = labels
    by_path = {str(s.path.resolve()): s.split for s in split_dataset(open_dataset(DATA), val=0.0, test=0.2).samples}
    splits = [by_path[p] for p in paths]
    with tempfile.TemporaryDirectory(prefix="label-issues-") as tmp:
        work = Path(tmp)
        clean_line = None
        for share in args.noise:
            noisy, planted = flip(labels, classes, share)
            print(f"\n== {share:.0%} noise: {len(planted)} of {len(paths)} labels flipped (seed 0)", flush=True)
            suggested = judge(paths, noisy, masks, planted, args, work)
            if args.no_accuracy:
                continue
            fixed = [suggested.get(p) or n if s == "train" else n for p, n, s in zip(paths, noisy, splits)]
            print(f"accuracy on the clean test split ({splits.count('test')} images), {args.accuracy_epochs} epochs:")
            print(accuracy(paths, noisy, masks, splits, args, work, f"noisy{share:.2f}"), flush=True)
            print(accuracy(paths, fixed, masks, splits, args, work, f"fixed{share:.2f}"), flush=True)
            clean_line = clean_line or accuracy(paths, labels, masks, splits, args, work, "clean")
            print(clean_line, flush=True)
    print(f"\nload average at the end: {os.getloadavg()} (a shared 2-core machine: timings are under load)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
