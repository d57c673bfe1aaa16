"""The evaluator: any bundle on a labelled dataset split, through the one ``Predictor`` (never a
second preprocessing path) and the bundle's task (``Task.evaluate``), which returns a typed result;
``write_json`` and ``write_csv`` serialise any task's result, ``Task.write_plots`` draws it, and
``save_threshold`` stores the threshold an evaluation chose in the bundle's card.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from inspekt import storage
from inspekt.bundle import Bundle, copy_bundle, graph_digest, open_bundle
from inspekt.card import ModelCard
from inspekt.data import Dataset, open_dataset
from inspekt.data.dataset import SPLIT_ALIASES, image_keys
from inspekt.engine.predictor import Predictor, task_of
from inspekt.errors import ConfigError, DatasetError, InspektError
from inspekt.tasks.shared import BEST_F1, parse_threshold_choice

SEEN_METRIC = "n_seen"  # evaluated images the model trained or was validated on (bundles that record them)


def select_split(dataset: Dataset, split: str | None) -> tuple[Dataset, str]:
    """The samples to evaluate: ``split`` if given ("all" for every sample), else test, else val, else all.

    Args:
        dataset: the opened dataset.
        split: train, val, test (or an alias such as validation), all, or None for the default.

    Returns:
        The samples of the split and its canonical name.

    Raises:
        DatasetError: the dataset has no such split (the message lists the ones it has).
    """
    if split is None:
        split = next((s for s in ("test", "val") if s in dataset.splits), "all")
    split = SPLIT_ALIASES.get(split.lower(), split.lower())
    if split == "all":
        return dataset, split
    if split not in dataset.splits:
        available = ", ".join(dataset.splits) or "none"
        raise DatasetError(
            f"{dataset.root}: no {split!r} split (splits available: {available}); choose one of "
            f"them or --split all to evaluate all {len(dataset)} images"
        )
    return dataset.subset(split), split


def training_images_note(split: str, metrics: dict) -> str | None:
    """A warning when the evaluated images hold images the model trained or was validated on (its scores
    then flatter it): counted from the bundle's record (``metrics["n_seen"]``), whatever folder or CSV lists
    them; for bundles without one, guessed from the split's name."""
    seen = metrics.get(SEEN_METRIC)
    if seen is not None:
        if not seen:
            return None
        return (
            f"{seen} of the evaluated images trained or validated the model, so the scores flatter it; evaluate "
            "images it never saw (a test split)"
        )
    if split == "train":
        return "these are the training images: the scores flatter the model; evaluate the test split"
    if split == "all":
        return "'all' includes the training images when the dataset has splits, which flatters the scores; prefer test"
    return None


def count_seen(predictor: Predictor, samples) -> int | None:
    """How many of ``samples`` the model trained or was validated on (None: its bundle keeps no record, or
    some of them are remote or unreadable and cannot be told apart)."""
    seen = predictor.seen
    keys = image_keys([s.path for s in samples]) if seen is not None else None
    if keys is None:
        return None
    known = seen["train"] | seen["val"]
    return sum(key in known for key in keys)


def evaluate(
    model: str | Path | Bundle | Predictor,
    data: str | Path | Dataset,
    *,
    split: str | None = None,
    backend: str = "onnx",
    batch_size: int = 16,
    progress: Callable[[int], None] | None = None,
):
    """Predict every image of a dataset split with a bundle and score the predictions.

    Classifiers: binary models are decided at the card's threshold when it has one (as the
    Predictor does), else by the most probable class; their threshold sweep is included.
    Segmentation models: scored against the masks at the original image size
    (``inspekt.tasks.segment.evaluate``), giving a ``SegEvalResult``. Anomaly models: normal class vs the
    rest, pixel metrics where masks exist (``inspekt.tasks.anomaly.evaluate``), an ``AnomalyEvalResult``.

    Args:
        model: bundle folder, ``.inspekt`` file, run folder, an opened ``Bundle``, or a loaded ``Predictor``
            (then ``backend`` and ``batch_size`` are its own).
        data: dataset folder, CSV, or an opened ``Dataset``.
        split: the split to evaluate (default: test, else val, else all images); "all" for all.
        backend: "onnx" or "torch".
        batch_size: images per model call.
        progress: called with the number of files processed after each batch.

    Returns:
        The evaluation result; unreadable files are skipped and listed in ``skipped``.

    Raises:
        BundleError: the bundle cannot be opened.
        ConfigError: a bad backend / batch size.
        DatasetError: no such split, unlabelled images, labels the model does not know, no masks
            (segmentation), or no readable image at all.
    """

    if not isinstance(model, Predictor):  # a Predictor given in was loaded, and its caveats said, by the caller
        model = Predictor.load(model, backend=backend, batch_size=batch_size)
        for caveat in model.caveats():
            warnings.warn(caveat, UserWarning, stacklevel=2)
    predictor = model
    dataset = data if isinstance(data, Dataset) else open_dataset(data)
    dataset, split = select_split(dataset, split)
    result = predictor.task.evaluate(predictor, dataset, split, progress)
    seen = count_seen(predictor, dataset.samples)
    if seen is not None:
        result.metrics[SEEN_METRIC] = seen
    return result


def save_threshold(bundle: str | Path | Bundle, threshold: float | str, *, result: Any = None) -> ModelCard:
    """Store ``{positive class: threshold}`` in a binary bundle's card (segmentation: the defect
    probability threshold of its post-processing; detection: the box score threshold; anomaly: the
    normalised score at which an image is anomalous), rewriting it in place: ``eval --set-threshold``.

    Args:
        bundle: bundle folder, ``.inspekt`` file, run folder or an opened ``Bundle``.
        threshold: the probability from which the positive class (a defect pixel) is predicted, or
            ``"best-f1"``: the best-F1 threshold of ``result``.
        result: ``inspekt.evaluate(bundle, data)``'s result, for ``"best-f1"``.

    Returns:
        The new card (the other members are copied byte for byte).

    Raises:
        BundleError: the bundle cannot be opened or rewritten.
        ConfigError: not a binary classifier or segmentation model, or a threshold outside [0, 1].
    """
    opened = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    task, value = task_of(opened), parse_threshold_choice(threshold)
    if value == BEST_F1:
        if result is None:
            raise ConfigError(
                "threshold='best-f1' is chosen on an evaluation: pass result=inspekt.evaluate(bundle, DATA) "
                "(annotated images the model did not train on)"
            )
        _check_result_of(result, opened)
        value = task.choose_threshold(result, task.check_threshold_choice(opened.card, value))
    card = task.store_threshold(opened.card, float(value))
    copy_bundle(opened, opened.path, archive=opened.path.is_file(), overwrite=True, card=card)
    return card


def _check_result_of(result: Any, bundle: Bundle) -> None:
    """``result`` must be ``evaluate``'s result for this bundle's model: a threshold chosen on another
    model's scores means nothing for this one."""
    source = getattr(result, "bundle", None)
    if source is None or not hasattr(result, "rows"):
        raise ConfigError(f"result={type(result).__name__}: give what inspekt.evaluate(bundle, DATA) returned")
    kind = getattr(result, "task", "classify")
    if kind != bundle.card.task:
        raise ConfigError(f"result= is a {kind} evaluation; {bundle.path} is a {bundle.card.task} model")
    try:
        same = graph_digest(open_bundle(source)) == graph_digest(bundle)
    except InspektError:  # the evaluated bundle moved or was deleted: judge by the path
        same = str(source) == str(bundle.path)
    if not same:
        raise ConfigError(
            f"result= evaluated {source}, not {bundle.path}: a threshold chosen on another model's scores does "
            "not fit this one; evaluate this bundle first"
        )


# --- rendering -------------------------------------------------------------------------------


def write_json(result: Any, path: str | Path) -> Path:
    """Write ``result.to_dict()`` as JSON (``path`` may be an fsspec URL)."""
    path = storage.as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.to_dict(), indent=2), encoding="utf-8")
    return path


def write_csv(result: Any, path: str | Path) -> Path:
    """Write the per-image rows as CSV (classify: path, true, predicted, correct, score_<class> ...;
    segment: path, label, defective, verdict, score, iou, tp, fp, fn, components); ``path`` may be a URL."""
    import io

    path = storage.as_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(result.rows[0]) if result.rows else ["path"]
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    writer.writerows(result.rows)
    path.write_bytes(text.getvalue().encode("utf-8"))  # bytes: the CSV line ends stay exactly \r\n
    return path
