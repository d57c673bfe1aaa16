"""Out-of-sample predictions for every image of a dataset: what ``data issues`` judges the data by.

Either k-fold cross-validation with inspekt's own trainer (each image is predicted by the one fold
model that never saw it; exact duplicates share a fold, so no image is predicted by a model trained
on its copy), or a given bundle's predictions on the images it was not trained on. Every model
predicts through the one ``Predictor``, so what is judged is what the user would get.
"""

from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inspekt import storage
from inspekt.bundle import ONNX
from inspekt.config import TrainConfig, build_config
from inspekt.data.dataset import Dataset, Sample, image_keys
from inspekt.engine.predictor import Predictor
from inspekt.engine.trainer import train
from inspekt.errors import ConfigError, InspektError, one_line
from inspekt.progress import Reporter, current, reporting, step, warn
from inspekt.results import BatchReport, Prediction, SkippedFile
from inspekt.tasks import get_task

# The small, fast recipe each fold trains with (key=value overrides change it). The kept epoch is the
# one with the lowest validation loss: a fold's validation share is small, and a rate such as macro-F1
# on a few images ties early and keeps an under-trained epoch. Batches are class-balanced (in a few
# epochs a rare class is otherwise never learnt); the uniform prior this trains under is undone before
# the labels are judged (``curate.labels.to_label_prior``).
RECIPE = {
    "metric": "val_loss",
    "sampler": "balanced",
    "epochs": 8,
    "imgsz": 64,
    "batch": 32,
    "lr": 0.002,
    "augment": "light",
    "val": 0.1,
    "patience": 100,
}


@dataclass
class OutOfSample:
    """Predictions of images by models that did not train on them.

    Attributes:
        task: the task of the models (a name in the registry).
        predictions: image path (as in the dataset) -> its prediction (or what the caller kept of it).
        model: which model(s) made them, in words (shown with every result).
        skipped: images no model could read.
        notes: what the user must know (a model trained on these images, folds without a class ...).
        card: the (last) model's card: classes, thresholds, mask rule.
        balanced: the models trained on class-balanced batches (a uniform class prior).
    """

    task: str
    predictions: dict[str, Prediction]
    model: str
    skipped: list[SkippedFile] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    card: Any = None
    balanced: bool = False


class _FoldReporter(Reporter):
    """The fold's training as the outer reporter's steps; its announcements are dropped (one fold's
    "data ... model ..." lines, k times over, say nothing new) and its warnings name the fold."""

    def __init__(self, outer: Reporter, fold: str):
        self.outer, self.fold = outer, fold

    def begin(self, name: str, total: int | None, announce: bool) -> Any:
        return self.outer.begin(f"{self.fold}: {name}", total, False)

    def advance(self, handle: Any, n: int) -> None:
        self.outer.advance(handle, n)

    def end(self, handle: Any) -> None:
        self.outer.end(handle)

    def say(self, message: str, warning: bool = False) -> None:
        if warning:
            self.outer.say(f"{self.fold}: {message}", warning=True)


def fold_of(ds: Dataset, duplicates: Sequence[Sequence[str]], folds: int, seed: int) -> np.ndarray:
    """The fold (0..folds-1) of every sample: stratified by label, exact duplicates in one fold.

    Raises:
        ConfigError: fewer than 2 folds, or more folds than images.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    if not 2 <= folds <= len(ds):
        raise ConfigError(f"--folds {folds} must be at least 2 and at most the {len(ds)} images of {ds.root}")
    group = {str(s.path): i for i, s in enumerate(ds.samples)}
    for members in duplicates:
        for path in members:
            group[path] = group[members[0]]
    labels = [s.label or "" for s in ds.samples]
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    out = np.zeros(len(ds), dtype=int)
    with warnings.catch_warnings():  # a class with fewer images than folds: sklearn warns, the split is still valid
        warnings.simplefilter("ignore", UserWarning)
        for k, (_, held) in enumerate(splitter.split(labels, labels, [group[str(s.path)] for s in ds.samples])):
            out[held] = k
    return out


def _fold_csv(samples: Sequence[Sample], held: np.ndarray, path: Path) -> Path:
    """A dataset CSV in which the held-out fold is the ``test`` split (never trained or validated on)."""
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(("path", "label", "mask", "split"))
    for sample, out in zip(samples, held):
        mask = sample.mask.resolve() if sample.mask else ""
        writer.writerow([sample.path.resolve(), sample.label or "", mask, "test" if out else "train"])
    path.write_text(text.getvalue(), encoding="utf-8")
    return path


def recipe_config(task: str, data: str | Path, work: Path, overrides: Sequence[str] = (), seed: int = 0) -> TrainConfig:
    """The training config of one fold: ``RECIPE`` (the task's default model), then ``overrides``."""
    options = {"task": task, "data": str(data), "out": str(work), "seed": seed, "exist_ok": True, **RECIPE}
    return get_task(task).configure(build_config(TrainConfig, options=options, overrides=list(overrides)))


Keep = Callable[[Any], Callable[[str, Prediction], Any]]  # card -> (image path, prediction) -> what is kept


def _train_fold(ds: Dataset, cfg: TrainConfig, held: np.ndarray, data: Path, name: str, outer: Reporter) -> Path:
    """Train one fold's model on every image but the ``held`` ones; returns its bundle."""
    trained_on = [s for s, out in zip(ds.samples, held) if not out]
    update = {"data": str(_fold_csv(ds.samples, held, data)), "name": data.stem, "val": _val_share(trained_on, cfg.val)}
    with (
        step(f"{name}: training ({cfg.epochs} epochs)", cfg.epochs) as advance,
        reporting(_FoldReporter(outer, name)),
    ):
        try:
            result = train(cfg.model_copy(update=update), on_epoch=lambda row: advance() if "epoch" in row else None)
        except InspektError as exc:  # the same error, saying which dataset and fold it is about
            exc.args = (f"{ds.root}: cross-validation {name}: {exc}",)
            raise
    return result.bundle


def _val_share(samples: Sequence[Sample], share: float) -> float:
    """The validation share of a fold's training images: ``share``, raised (to at most half) so that the
    smallest class keeps one validation image (the trainer rounds each class's share)."""
    counts: dict[str | None, int] = {}
    for sample in samples:
        counts[sample.label] = counts.get(sample.label, 0) + 1
    smallest = min(counts.values(), default=1)
    return min(0.5, max(share, 0.6 / smallest))


def _predict(
    predictor: Predictor, files: dict[str, str], report: BatchReport, what: str, keep: Keep | None
) -> dict[str, Any]:
    """Predict ``files`` (path given to the model -> path as in the dataset), one step of progress per
    batch; keeps ``keep(card)(path, prediction)`` of each (default: the prediction). A file whose
    prediction cannot be kept (an unreadable mask) is skipped and reported."""
    judge = keep(predictor.card) if keep else (lambda path, p: p)
    out: dict[str, Any] = {}
    sources = list(files)
    with step(what, len(sources)) as advance:
        for start in range(0, len(sources), predictor.batch_size):
            chunk = sources[start : start + predictor.batch_size]
            for p in predictor.predict(chunk, report=report):
                try:
                    out[files[p.source]] = judge(files[p.source], p)
                except InspektError as exc:
                    report.skipped.append(SkippedFile(p.source, one_line(exc)))
            advance(len(chunk))
    return out


def cross_validate(
    ds: Dataset,
    task: str,
    work: Path,
    *,
    folds: int = 4,
    overrides: Sequence[str] = (),
    seed: int = 0,
    duplicates: Sequence[Sequence[str]] = (),
    keep: Keep | None = None,
) -> OutOfSample:
    """Train ``folds`` models, each on all folds but one, and predict the fold it left out.

    Args:
        ds: the dataset (its own splits are ignored: every image is predicted once).
        task: the task to train (a registry name whose ``Task.issues`` is not empty).
        work: a folder for the fold CSVs and run folders (the caller removes it).
        folds: how many folds (and models).
        overrides: ``key=value`` changes to ``RECIPE`` (e.g. ``epochs=20``, ``model=resnet18``).
        seed: seeds the folds and the training.
        duplicates: groups of byte-identical images (``data info``), kept in one fold.
        keep: what to keep of each prediction, given the model's card (default: the prediction).

    Returns:
        Every readable image's out-of-sample prediction.
    """
    cfg = recipe_config(task, ds.root, work, overrides, seed)  # a bad override fails before any training
    assignment = fold_of(ds, duplicates, folds, seed)
    report, predictions, card = BatchReport(), {}, None
    outer = current()
    for k in range(folds):
        name = f"fold {k + 1}/{folds}"
        bundle = _train_fold(ds, cfg, assignment == k, work / f"fold{k + 1}.csv", name, outer)
        held = {str(s.path.resolve()): str(s.path) for s, out in zip(ds.samples, assignment == k) if out}
        predictor = Predictor.load(bundle)
        predictions |= _predict(predictor, held, report, f"{name}: predicting held-out images", keep)
        card = card or predictor.card
    by_path = {str(s.path.resolve()): str(s.path) for s in ds.samples}
    model = (
        f"{folds}-fold cross-validation: {cfg.model} trained {cfg.epochs} epochs at {cfg.imgsz} px per fold, "
        f"seed {seed}"
    )
    skipped = _named(report, by_path)
    return OutOfSample(task, predictions, model, skipped, card=card, balanced=cfg.sampler == "balanced")


def _named(report: BatchReport, by_path: dict[str, str]) -> list[SkippedFile]:
    return [SkippedFile(by_path.get(s.path, s.path), s.reason) for s in report.skipped]


def _held_out(ds: Dataset, predictor: Predictor, bundle: str) -> tuple[Dataset, list[str]]:
    """The images a bundle can judge fairly, and what the user must know about the rest. A bundle that
    records the images it trained on (``Predictor.seen``) judges all the others, however the dataset lists them.
    Older bundles: a model trained on this very dataset (its card's data fingerprint) is judged on the test
    split only. With nothing left to judge every image is judged, with a loud warning (it saw them, so it
    trusts their labels)."""
    card, seen = predictor.card, predictor.seen
    keys = image_keys([s.path for s in ds.samples]) if seen is not None else None
    if keys is not None:  # the record, and every image told apart (local, readable)
        unseen = [s for s, key in zip(ds.samples, keys) if key not in seen["train"]]
        trained = len(ds) - len(unseen)
        if not trained:
            return ds, []
        if unseen:
            note = f"{bundle} trained on {trained} of these images: only the other {len(unseen)} are judged"
            return replace(ds, samples=tuple(unseen)), [note]
        return ds, [_trained_on_all(bundle, card)]
    if card.data.fingerprint != ds.fingerprint():
        if card.data.source and storage.same_source(card.data.source, ds.root):
            return ds, [
                f"{bundle} was trained on {card.data.source}, which has changed since: images it trained on "
                "may be among these, where it trusts their labels; predictions there miss label issues"
            ]
        return ds, []
    if "test" in ds.splits:
        test = ds.subset("test")
        return test, [f"{bundle} was trained on this dataset: only its {len(test)} test images are judged"]
    return ds, [_trained_on_all(bundle, card)]


def _trained_on_all(bundle: str, card: Any) -> str:
    return (
        f"{bundle} was trained on these very images (card data fingerprint {card.data.fingerprint}); it has "
        "learnt their labels, wrong ones included, so most label issues stay hidden. Judge a dataset with a "
        "test split the model never saw, or leave --model out to cross-validate"
    )


def from_bundle(ds: Dataset, bundle: str | Path, keep: Keep | None = None) -> OutOfSample:
    """A bundle's predictions on the images of ``ds`` it did not train on (see ``_held_out``).

    Raises:
        BundleError: the bundle cannot be opened.
        ConfigError: ``data issues`` has nothing to check with this task's models.
        DatasetError: data the bundle cannot judge (``Task.check_data``).
    """
    predictor = Predictor.load(bundle)
    card = predictor.card
    if not get_task(card.task).issues:
        raise ConfigError(
            f"--model {bundle}: data issues checks labels and masks with classify and segment models; "
            f"this is a {card.task} model. Leave --model out to cross-validate"
        )
    get_task(card.task).check_data(ds, card, "leave --model out to cross-validate")  # as eval refuses it
    judged, notes = _held_out(ds, predictor, str(bundle))
    notes += [f"{caveat}; its flags are unreliable" for caveat in predictor.caveats()]  # noise, however many judged
    for note in notes:
        warn(note)
    report = BatchReport()
    by_path = {str(s.path): str(s.path) for s in judged.samples}
    found = _predict(predictor, by_path, report, "predicting with the model", keep)
    digest = card.digests.get(ONNX, "")[:19]  # "sha256:" and 12 hex digits
    model = f"model {bundle} ({card.architecture}, {card.task}{', model.onnx ' + digest if digest else ''})"
    return OutOfSample(card.task, found, model, _named(report, by_path), notes, card)
