"""``inspekt data issues`` / ``inspekt.find_issues``: everything suspect in a dataset, in one ranking.

Each finder scores its issues 0..1 as how surely a person should act on them (``labels``, ``masks``,
``gaps`` say how). The ranking sorts all issues by that score, highest first; ties go to the kind
met first in ``KINDS`` (label, mask, duplicate, outlier, split), then to the path. One image can
appear more than once (say, a suspect label and a near-duplicate): each row is one thing to check.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspekt.bundle import open_bundle
from inspekt.curate.gaps import bad_mask_issues, duplicate_issues, near_copies, outlier_issues, split_issues
from inspekt.curate.issues import KINDS, DataIssue
from inspekt.curate.labels import LabelRanking, label_issues, rank_labels
from inspekt.curate.masks import mask_checker, mask_issues, median_iou
from inspekt.curate.predictions import OutOfSample, cross_validate, from_bundle
from inspekt.data import open_dataset
from inspekt.data.dataset import Dataset
from inspekt.data.info import describe
from inspekt.errors import ConfigError, DatasetError, did_you_mean
from inspekt.progress import step, warn
from inspekt.results import SkippedFile
from inspekt.tasks import get_task, tasks_for

WEAK_IOU = 0.3  # a judging segmentation model below this median IoU is said to be too weak


@dataclass
class IssueReport:
    """What ``find_issues`` found: numbers and rows only (``curate.report`` renders it).

    Attributes:
        root: the dataset folder or CSV.
        layout: its layout.
        n_images: images in the dataset.
        task: the task whose models judged it (a registry name), or None when none could.
        model: which model(s) judged it, in words.
        issues: the ranked issues (``rank`` 1 first).
        skipped: images that could not be read (or whose mask could not), and why.
        notes: what the user must know about the result.
        summary: per-finder figures (e.g. how many labels cleanlab judged, the median mask IoU).
        seconds: wall time.
        label_ranking: every judged image by label quality (classification), for benchmarks.
    """

    root: str
    layout: str
    n_images: int
    task: str | None
    model: str
    issues: list[DataIssue]
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    label_ranking: LabelRanking | None = None

    def counts(self) -> dict[str, int]:
        """Issues per kind (every kind, 0 included)."""
        return {kind: sum(i.kind == kind for i in self.issues) for kind in KINDS}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (without the full label ranking)."""
        out = {k: v for k, v in dataclasses.asdict(self).items() if k not in ("label_ranking", "issues", "skipped")}
        out["issues"] = [dataclasses.asdict(i) for i in self.issues]
        out["skipped"] = [dataclasses.asdict(s) for s in self.skipped]
        out["counts"] = self.counts()
        return out


def rank_issues(issues: Sequence[DataIssue]) -> list[DataIssue]:
    """Issues sorted by score (highest first; ties: kind in ``KINDS`` order, then path), ranked 1, 2, ...;
    scores are kept to 6 significant digits, as the CSV writes them (so both say the same)."""
    rounded = [dataclasses.replace(i, score=float(f"{i.score:.6g}")) for i in issues]
    ordered = sorted(rounded, key=lambda i: (-i.score, KINDS.index(i.kind), i.path))
    return [dataclasses.replace(issue, rank=n) for n, issue in enumerate(ordered, start=1)]


def _judging_task(ds: Dataset, task: str | None) -> str | None:
    """The task whose models judge the data: ``task`` if given, else the first the data fits that has
    issues to find (classify before segment: labels before masks)."""
    fitting = [name for name in tasks_for(ds) if get_task(name).issues]
    if task is None:
        return fitting[0] if fitting else None
    if get_task(task).issues and task in fitting:
        return task
    raise ConfigError(
        f"--task {task}: {ds.root} cannot be judged with {task} models; it fits "
        f"{', '.join(fitting) or 'none of classify, segment'}.{did_you_mean(task, fitting)}"
    )


def _judge(ds: Dataset, info: Any, task: str | None, model: str | Path | None, options: dict) -> OutOfSample:
    """Out-of-sample predictions of every image: the bundle's, or cross-validated ones."""
    if model is not None:
        card = open_bundle(model).card
        if task is not None and task != card.task:
            raise ConfigError(f"--task {task} but --model {model} is a {card.task} model; leave --task out")
        return from_bundle(ds, model, mask_checker(ds) if get_task(card.task).issues == "mask" else None)
    keep = mask_checker(ds) if get_task(task).issues == "mask" else None
    with tempfile.TemporaryDirectory(prefix="inspekt-issues-") as work:
        return cross_validate(ds, task, Path(work), duplicates=info.duplicates, keep=keep, **options)


def _model_issues(ds: Dataset, judged: OutOfSample, splits: dict) -> tuple[list[DataIssue], dict, Any]:
    """Label or mask issues from the out-of-sample predictions, with their summary figures."""
    if get_task(judged.task).issues == "mask":
        checks = judged.predictions
        return mask_issues(checks, splits), {"masks_judged": len(checks), "median_iou": median_iou(checks)}, None
    ranking = rank_labels(ds, judged.predictions, balanced=judged.balanced)
    issues = label_issues(ranking, splits) + outlier_issues(judged.predictions, ds)
    return issues, {"labels_judged": len(ranking.paths), **agreement(ranking)}, ranking


def agreement(ranking: LabelRanking) -> dict[str, float]:
    """How well the judging model predicts the given labels: accuracy and balanced accuracy (mean
    per-class recall) of its most probable class, and chance (1 / classes labelled)."""
    if not ranking.paths:
        return {}
    hits = [g == s for g, s in zip(ranking.given, ranking.suggested)]
    classes = sorted(set(ranking.given))
    recalls = [sum(h for g, h in zip(ranking.given, hits) if g == c) / ranking.given.count(c) for c in classes]
    return {
        "accuracy": round(sum(hits) / len(hits), 4),
        "balanced_accuracy": round(sum(recalls) / len(recalls), 4),
        "chance": round(1 / len(classes), 4),
    }


def weak_below(chance: float) -> float:
    """The balanced accuracy under which a judge is too weak: half right, or twice chance when there are
    many classes; never less than 0.1 above chance (two classes: 0.6, where 0.5 is a coin)."""
    return max(min(0.5, 2 * chance), chance + 0.1)


def _weak_model(summary: dict[str, Any], given: bool) -> list[str]:
    """A warning when the judging model barely beats chance: its flags would be mostly noise (``given``: the
    user's --model judged, rather than cross-validated folds)."""
    if summary.get("median_iou") is not None and summary["median_iou"] < WEAK_IOU:
        remedy = "give a better --model" if given else "train the folds longer (e.g. epochs=40) or give --model"
        return [
            f"the judging model's median IoU with the drawn masks is {summary['median_iou']:.2f}: it segments too "
            f"poorly to tell wrong masks from its own mistakes; {remedy}"
        ]
    if "balanced_accuracy" not in summary or summary["balanced_accuracy"] >= weak_below(summary["chance"]):
        return []
    remedy = (
        "give a better --model, or leave it out to cross-validate"
        if given
        else "train the folds longer or larger (e.g. epochs=20 imgsz=128) or give --model"
    )
    return [
        f"the judging model's out-of-sample balanced accuracy is {summary['balanced_accuracy']:.2f} (chance "
        f"{summary['chance']:.2f}): it has learnt too little to tell wrong labels from right ones, so most flags are "
        f"noise; {remedy}"
    ]


def find_issues(
    data: str | Path | Dataset,
    model: str | Path | None = None,
    *,
    task: str | None = None,
    folds: int = 4,
    overrides: Sequence[str] = (),
    seed: int = 0,
    workers: int | None = None,
) -> IssueReport:
    """Find suspect labels and masks, duplicates, outliers and split gaps in a dataset, ranked.

    ``inspekt.find_issues("parts/")`` cross-validates a small model to judge every image;
    ``find_issues("parts/", model="model.inspekt")`` judges with a trained bundle instead.

    Args:
        data: dataset folder or CSV (or an opened ``Dataset``).
        model: a classify or segment bundle to judge with, instead of cross-validation.
        task: "classify" (labels) or "segment" (masks); default: labels when the data has classes.
        folds: cross-validation folds (ignored with ``model``).
        overrides: ``key=value`` changes to the folds' training recipe (``curate.predictions.RECIPE``).
        seed: seeds the folds and their training.
        workers: decoding threads for the duplicate check (default: the CPU count).

    Returns:
        The ranked issues, the skipped files and what judged them.

    Raises:
        DatasetError: the dataset cannot be read.
        ConfigError: a bad option, or data no model can judge (the duplicate checks still need classes or masks).
        BundleError: the model cannot be opened.
    """
    start = time.perf_counter()
    ds = data if isinstance(data, Dataset) else open_dataset(data)
    chosen = _judging_task(ds, task) if model is None else task
    if chosen is None and model is None:
        raise DatasetError(
            f"{ds.root}: no labels (2 classes or more) and no masks to judge; data issues needs one of them "
            "(inspekt data info shows what the dataset holds)"
        )
    with step("reading images (duplicates, sizes, masks)", len(ds)) as advance:
        info = describe(ds, workers=workers, progress=lambda _: advance())
    splits = {str(s.path): s.split for s in ds.samples}
    judged = _judge(ds, info, chosen, model, {"folds": folds, "overrides": overrides, "seed": seed})
    found, summary, ranking = _model_issues(ds, judged, splits)
    for note in _weak_model(summary, given=model is not None):
        warn(note)
        judged.notes.append(note)
    found += duplicate_issues(ds, info) + bad_mask_issues(ds, info) + split_issues(ds)
    summary["near_duplicate_families_left_out"] = len(info.near_duplicates) - len(near_copies(info))
    skipped = {p.path: SkippedFile(p.path, p.reason) for p in info.corrupt}
    skipped |= {s.path: s for s in judged.skipped if s.path not in skipped}
    return IssueReport(
        root=str(ds.root),
        layout=ds.layout,
        n_images=len(ds),
        task=judged.task,
        model=judged.model,
        issues=rank_issues(found),
        skipped=list(skipped.values()),
        notes=judged.notes,
        summary=summary,
        seconds=round(time.perf_counter() - start, 2),
        label_ranking=ranking,
    )
