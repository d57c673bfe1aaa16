"""Issues of the dataset as a whole, from what ``data info`` finds (duplicates, near-duplicates, bad
masks) and from the model (outliers), plus classes and sizes present on one split only.

Scores (0..1, how surely a person should act):

* byte-identical copies across splits (a test image trained on): 1.0; with different labels: 0.95;
  near-duplicates across splits 0.8 (0.9 with different labels); copies within one split 0.6,
  near-duplicates within one 0.4 (near-duplicate groups of more than ``NEAR_GROUP_MAX`` images are
  left out: hashes linked from image to image join whole families of similar plain textures);
* a file the dataset lists more than once (a repeated CSV row): 1.0 on other splits, 0.95 under other
  labels, else 0.6;
* a mask that cannot be used (unreadable, another size than its image): 1.0;
* a class on one split only: 1.0 when training lacks it, else 0.7; test/val sizes outside training's
  range: 0.5;
* an outlier: 1 - 1/novelty (novelty 2, twice as far from the training images as 99 % of held-out
  images: 0.5), from the novelty check every classifier bundle carries.
"""

from __future__ import annotations

from collections.abc import Sequence

from inspekt.curate.issues import DataIssue
from inspekt.data.dataset import SPLITS, Dataset
from inspekt.data.info import DatasetInfo
from inspekt.errors import ImageLoadError
from inspekt.io import image_size
from inspekt.results import Prediction

NEAR_GROUP_MAX = 4  # near-duplicate groups larger than this are similar pictures, not copies
SIZE_SLACK = 1.1  # a held-out image up to 10 % outside training's width / height range is not flagged


def _split_order(split: str | None) -> int:
    return SPLITS.index(split) if split in SPLITS else len(SPLITS)


def _group_issues(groups: Sequence[Sequence[str]], samples: dict, exact: bool) -> list[DataIssue]:
    """One issue per copy after the first (training copies first, so the held-out one is named)."""
    issues = []
    for group in groups:
        members = sorted(set(group), key=lambda p: (_split_order(samples[p].split), p))  # a file listed twice: once
        first = samples[members[0]]
        for path in members[1:]:
            sample = samples[path]
            crossing, differ = sample.split != first.split, sample.label != first.label
            score = (1.0 if crossing else 0.6) if exact else (0.8 if crossing else 0.4)
            score = max(score, 0.95 if exact else 0.9) if differ else score
            what = "byte-identical to" if exact else "a near-duplicate of"
            where = f" ({first.split} split)" if crossing else ""
            labels = f"; labelled {sample.label}, the other {first.label}" if differ else ""
            detail = f"{what} {first.path}{where}{labels}"
            issues.append(
                DataIssue(
                    0, path, sample.split, "duplicate", score, sample.label, first.label if differ else None, detail
                )
            )
    return issues


def near_copies(info: DatasetInfo) -> list[list[str]]:
    """The near-duplicate groups of ``data info`` that look like copies of one picture: at most
    ``NEAR_GROUP_MAX`` images. Larger groups (hashes linked from image to image) are families of
    similar-looking pictures, such as plain textures, not copies, and are not reported as issues."""
    return [g for g in info.near_duplicates if len(g) <= NEAR_GROUP_MAX]


def duplicate_issues(ds: Dataset, info: DatasetInfo) -> list[DataIssue]:
    """Exact and near-duplicates (``data info``), scored by whether they cross splits or disagree, and files
    the dataset lists more than once (a CSV row repeated under another split or label)."""
    samples = {str(s.path): s for s in ds.samples}
    found = _group_issues(info.duplicates, samples, True) + _group_issues(near_copies(info), samples, False)
    return found + _listed_again(ds)


def _listed_again(ds: Dataset) -> list[DataIssue]:
    """One issue per file listed more than once: 1.0 across splits (it is trained on and tested), 0.95
    under other labels, else 0.6."""
    rows: dict[str, list] = {}
    for sample in ds.samples:
        rows.setdefault(str(sample.path), []).append(sample)
    issues = []
    for path, listed in rows.items():
        if len(listed) < 2:
            continue
        splits = sorted({s.split or "no" for s in listed}, key=_split_order)  # "the train and no splits"
        labels = sorted({s.label or "nothing" for s in listed})
        score = 1.0 if len(splits) > 1 else 0.95 if len(labels) > 1 else 0.6
        detail = f"listed {len(listed)} times in the dataset"
        detail += f", on the {' and '.join(splits)} splits" if len(splits) > 1 else ""
        detail += f", labelled {' and '.join(labels)}" if len(labels) > 1 else ""
        last = listed[-1]
        issues.append(DataIssue(0, path, last.split, "duplicate", score, last.label, None, detail))
    return issues


def bad_mask_issues(ds: Dataset, info: DatasetInfo) -> list[DataIssue]:
    """Masks ``data info`` could not use (unreadable, not the image's size)."""
    by_mask = {str(s.mask): s for s in ds.samples if s.mask is not None}
    issues = []
    for problem in info.mask_problems:
        sample = by_mask.get(problem.path)
        if sample is not None:
            detail = f"mask {problem.path}: {problem.reason}"
            issues.append(DataIssue(0, str(sample.path), sample.split, "mask", 1.0, sample.label, None, detail))
    return issues


def split_issues(ds: Dataset) -> list[DataIssue]:
    """Classes present on some splits but not others, and held-out sizes outside training's range."""
    if len(ds.splits) < 2:
        return []
    counts = ds.counts()
    issues = []
    for label in sorted({s.label for s in ds.samples if s.label}):
        missing = [split for split in ds.splits if not counts.get(split, {}).get(label)]
        if missing:
            example = next(s for s in ds.samples if s.label == label)
            score = 1.0 if "train" in missing else 0.7
            detail = f"class {label} has no images on the {', '.join(missing)} split(s) (found on {example.split})"
            issues.append(DataIssue(0, str(example.path), example.split, "split", score, label, None, detail))
    return issues + _size_issues(ds)


def _sizes(ds: Dataset) -> dict[str, tuple[int, int]]:
    sizes = {}
    for sample in ds.samples:
        try:
            sizes[str(sample.path)] = image_size(sample.path)
        except ImageLoadError:  # reported as a skipped file by data info
            continue
    return sizes


def _size_issues(ds: Dataset) -> list[DataIssue]:
    """One issue per held-out split whose images are wider / taller / smaller than any training image."""
    if "train" not in ds.splits:
        return []
    sizes = _sizes(ds)
    train = [sizes[str(s.path)] for s in ds.samples if s.split == "train" and str(s.path) in sizes]
    if not train:
        return []
    (w_lo, w_hi), (h_lo, h_hi) = ((min(v), max(v)) for v in zip(*train))
    issues = []
    for split in ds.splits[1:]:
        outside = [
            s
            for s in ds.samples
            if s.split == split and str(s.path) in sizes and not _within(sizes[str(s.path)], w_lo, w_hi, h_lo, h_hi)
        ]
        if outside:
            w, h = sizes[str(outside[0].path)]
            detail = (
                f"{len(outside)} {split} image(s) sized outside the training images' {w_lo}-{w_hi} x {h_lo}-{h_hi} px "
                f"(this one {w}x{h})"
            )
            issues.append(DataIssue(0, str(outside[0].path), split, "split", 0.5, outside[0].label, None, detail))
    return issues


def _within(size: tuple[int, int], w_lo: int, w_hi: int, h_lo: int, h_hi: int) -> bool:
    w, h = size
    return w_lo / SIZE_SLACK <= w <= w_hi * SIZE_SLACK and h_lo / SIZE_SLACK <= h <= h_hi * SIZE_SLACK


def outlier_issues(predictions: dict[str, object], ds: Dataset) -> list[DataIssue]:
    """Images whose embedding is further from the (fold) model's training images than 99 % of its
    held-out images (``Prediction.ood``, the bundle's novelty check)."""
    samples = {str(s.path): s for s in ds.samples}
    issues = []
    for path, prediction in predictions.items():
        ood = getattr(prediction, "ood", None) if isinstance(prediction, Prediction) else None
        if ood and ood["unlike_training"]:
            score = 1.0 - 1.0 / max(ood["score"], 1.0)
            detail = (
                f"unlike the training images: {ood['why']}"
                if ood.get("why")  # its size, far from every training image's
                else f"unlike the training images: novelty {ood['score']:.2f} (1 = as far as the furthest 1 % held out)"
            )
            sample = samples[path]
            issues.append(DataIssue(0, path, sample.split, "outlier", score, sample.label, None, detail))
    return issues
