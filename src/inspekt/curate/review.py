"""The Review page's queues and its retrain comparison, apart from Streamlit.

A queue is a list of ``ReviewItem``: images of one dataset worth a person's look, most suspect
first, each with why it is there. Four sources: the ranked issues CSV of ``inspekt data issues``,
the wrong answers of an evaluation, the predictions nearest the model's decision, and the images
of the monitor's drifted windows.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from inspekt.data import Dataset, Sample

SOURCES = {
    "issues": "ranked data issues (inspekt data issues --csv)",
    "errors": "wrong answers of an evaluation",
    "threshold": "predictions nearest the model's decision",
    "monitor": "images of the monitor's drifted windows",
}


@dataclass(frozen=True)
class ReviewItem:
    """One image to review: its sample, why it is queued, and a suggested label (or None)."""

    sample: Sample
    why: str
    suggested: str | None = None


@dataclass(frozen=True)
class Queue:
    """A queue, the entries that named no image of the dataset (reported, not queued), and for a queue of
    data issues their kinds (label, mask, ...: which task's answers they need)."""

    items: list[ReviewItem]
    missing: list[str]
    kinds: frozenset[str] = frozenset()


def _index(dataset: Dataset) -> dict[str, Sample]:
    return {os.path.normpath(str(s.path)): s for s in dataset.samples}


def _find(index: dict[str, Sample], path: str, bases: list[Path]) -> Sample | None:
    """The sample a path names: as written, relative to one of ``bases``, or (a relative path written
    from another folder, e.g. ``data/ok/1.png`` by a command run beside ``data/``) by its tail under
    the first base."""
    written = Path(path)
    tails = [Path(*written.parts[k:]) for k in range(1, len(written.parts))] if not written.is_absolute() else []
    for candidate in [written] + [base / path for base in bases] + [bases[0] / tail for tail in tails]:
        found = index.get(os.path.normpath(str(candidate)))
        if found is not None:
            return found
    return None


def _queue(dataset: Dataset, entries: list[tuple[str, str, str | None]], bases: list[Path]) -> Queue:
    """(path, why, suggested) entries as a queue of the dataset's samples, each image once."""
    index, items, missing, seen = _index(dataset), [], [], set()
    for path, why, suggested in entries:
        sample = _find(index, path, bases)
        if sample is None:
            missing.append(path)
        elif sample.path not in seen:
            seen.add(sample.path)
            items.append(ReviewItem(sample, why, suggested))
    return Queue(items, missing)


def _base(dataset: Dataset) -> Path:
    root = Path(dataset.root)
    return root.parent if root.is_file() else root


def from_issues(csv_path: str | Path, dataset: Dataset) -> Queue:
    """The issues of an ``inspekt data issues`` CSV, in its rank order (paths as written, or relative
    to the dataset or to the CSV's folder).

    Raises:
        DatasetError: the CSV cannot be read (``read_issues_csv`` says why).
    """
    from inspekt.curate.issues import read_issues_csv

    issues = sorted(read_issues_csv(csv_path), key=lambda issue: issue.rank)
    entries = [(i.path, f"#{i.rank} {i.kind} issue ({i.score:.2f}): {i.detail}", i.suggested) for i in issues]
    queue = _queue(dataset, entries, [_base(dataset), Path(csv_path).parent])
    return replace(queue, kinds=frozenset(i.kind for i in issues))


def _wrong(row: dict[str, Any]) -> bool:
    """An evaluation row the model got wrong (rows with ``correct``; segmentation rows compare the
    image's ``verdict`` with whether its mask is ``defective``)."""
    if "correct" in row:
        return not row["correct"]
    return "verdict" in row and "defective" in row and bool(row["verdict"]) != bool(row["defective"])


def _said(row: dict[str, Any]) -> str:
    """Why an evaluation row is in the queue: the model and the label disagree, and either may be wrong
    (the queue exists to find wrong labels), so the label is "labelled", not "true"."""
    names = {"true": "labelled"}
    keys = ("true", "predicted", "label", "verdict", "defective", "score")
    shown = [f"{names.get(k, k)} {v}" for k, v in row.items() if k in keys]
    return "model and label disagree: " + ", ".join(shown)


def from_evaluation(result: Any, dataset: Dataset) -> Queue:
    """The images an evaluation result (``engine.evaluator.evaluate``) got wrong, least sure first
    when rows carry a score."""
    wrong = [row for row in result.rows if _wrong(row)]
    entries = [(str(row["path"]), _said(row), row.get("predicted")) for row in wrong]
    return _queue(dataset, entries, [_base(dataset)])


def margin(prediction, threshold: float | None) -> float:
    """How far a prediction is from changing: the gap between its two most probable classes, else
    its score's distance from the threshold (0.5 when none is given)."""
    top = prediction.top(2)
    if len(top) == 2:
        return float(top[0][1] - top[1][1])
    return abs(float(prediction.score or 0.0) - (0.5 if threshold is None else threshold))


def near_threshold(
    predictor, dataset: Dataset, limit: int = 50, progress: Callable[[int], None] | None = None
) -> Queue:
    """The ``limit`` images whose predictions lie nearest the model's decision, nearest first."""
    from inspekt.results import BatchReport

    controls = predictor.task.controls(predictor.card)
    threshold = controls[0].value if controls else None
    scored = []
    samples = list(dataset.samples)
    for start in range(0, len(samples), 32):
        chunk = samples[start : start + 32]
        for prediction in predictor.predict([s.path for s in chunk], report=BatchReport()):
            scored.append((margin(prediction, threshold), prediction))
        if progress:
            progress(len(chunk))
    scored.sort(key=lambda pair: pair[0])
    entries = [(p.source, f"margin {m:.3f}: the model says {p.headline()}", None) for m, p in scored[:limit]]
    return _queue(dataset, entries, [_base(dataset)])


def monitor_flagged(db: str | os.PathLike | None, dataset: Dataset) -> Queue:
    """The images of the monitor's drifted windows that are files (a drop folder's) of the dataset.

    Raises:
        ConfigError: the history cannot be opened (``load_history`` says why).
    """
    from inspekt.monitor.summary import load_history

    data = load_history(db)
    drifted = [w for w in data["windows"] if w["drift"]]
    entries = []
    for image in data["images"]:
        window = next((w for w in drifted if w["first_image"] <= image["id"] <= w["last_image"]), None)
        if window is not None and image["status"] == "ok":
            checks = ", ".join(window["drifted"] or []) or "drift"
            path = str(Path(image["source"]) / image["item"])
            entries.append(
                (path, f"monitor window {window['id']} drifted ({checks}); model said {image['verdict']}", None)
            )
    return _queue(dataset, entries, [_base(dataset)])


def compare(old_run: str | Path, new_run: str | Path) -> tuple[list[dict], dict[str, list]]:
    """``inspekt runs compare`` for two run folders: each run's figures, and the settings that differ.

    Raises:
        ConfigError: a folder is not a complete run (``read_run`` says what is missing).
    """
    from inspekt.engine.runs import config_differences, read_run

    summaries = [read_run(old_run), read_run(new_run)]
    return [s.to_dict() for s in summaries], config_differences(summaries)


def old_run(bundle: Path, workspace: Path | None = None) -> Path | None:
    """The training run a bundle came from: its own run folder (``runs/<task>/<name>/bundle``), or for a
    copy elsewhere (``models/line.inspekt``) the run of ``workspace`` whose bundle holds the same
    model.onnx (``bundle.graph_digest``); None when neither."""
    from inspekt.bundle import graph_digest, open_bundle
    from inspekt.errors import InspektError

    run = Path(bundle).parent
    if Path(bundle).name == "bundle" and (run / "results.csv").is_file():
        return run
    if workspace is None:
        return None
    try:
        wanted = graph_digest(open_bundle(bundle))
    except InspektError:
        return None
    for found in sorted(Path(workspace).glob("runs/*/*/bundle")):
        try:
            same = graph_digest(open_bundle(found)) == wanted
        except InspektError:  # a run being written, or a damaged bundle: not this one
            continue
        if same and (found.parent / "results.csv").is_file():
            return found.parent
    return None


PAINT, ERASE = "#ff0000", "#0000ff"  # the canvas colours of the brush and the eraser


def mask_from_strokes(strokes: np.ndarray, mask: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray | None:
    """A corrected mask from what was drawn over an image: ``strokes`` (the canvas's RGBA, any size)
    holds brush pixels in ``PAINT`` red and eraser pixels in ``ERASE`` blue (the stroke drawn last is
    the one seen), applied to ``mask`` (HxW, non-zero = defect; None = empty) at the image's ``shape``.
    None when nothing was drawn."""
    import cv2

    drawn = strokes[..., 3] > 127
    red, blue = strokes[..., 0].astype(int), strokes[..., 2].astype(int)
    paint, erase = drawn & (red > blue), drawn & (blue > red)
    if not (paint.any() or erase.any()):
        return None
    size = (shape[1], shape[0])
    paint = cv2.resize(paint.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    erase = cv2.resize(erase.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
    before = np.zeros(shape, bool) if mask is None else np.asarray(mask) > 0
    return ((before | paint) & ~erase).astype(np.uint8)
