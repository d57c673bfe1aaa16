"""INT8 export: static ONNX Runtime quantisation of a bundle's ``model.onnx``, kept only when none
of the task's quality metrics (``Task.int8_metrics``: a classifier's accuracy and macro F1, a
segmenter's defect IoU and image F1, a detector's mAP@0.5 and box F1) drops by more than a limit on
annotated images, the two graphs agree (the same label, the same image verdict, the same boxes:
``Task.int8_agreement``) on at least ``min_agreement`` of their outputs (equal accuracy can hide
swapped errors), and INT8 is at least as fast as fp32 at batch 1 and batch 16 on the CPU doing the
export (``quant_speed``).

The graph is first shape-inferred and optimised (ONNX Runtime's ``quant_pre_process``), then
quantised in QDQ format with weights per output channel and activation ranges from MinMax
calibration. Which layers stay in fp32 follows the CPU, and when the fastest recipe is refused a careful one
that also keeps the narrow convolutions in fp32 is tried (``quant_recipe``, with the measurements behind
both); the first recipe accepted is written, and its card names the one refused before it.

Both steps go through the one ``Predictor``: calibration records the inputs it feeds the fp32 graph
(resized images, or the windows of tiled models), and each graph is judged by the task's own
evaluation (``Task.evaluate``), so the figures are the ones ``inspekt eval`` would print. Which
images (``pick_images``): calibration takes the dataset's ``train`` split when it has one, else the images
the model trained on (the bundle's record, ``seen_by``), else every image, thinned evenly to ``n_calib``; the
check takes the annotated ``val`` + ``test`` images the model did not train on (by the record, where there is
one), else the annotated images it did not train on (at least ``MIN_IMAGES``), else every annotated image: then
the calibration and evaluation images overlap, which flatters INT8 slightly, and where the record says the model
trained on them a warning says so.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from inspekt import progress, storage
from inspekt.bundle import ONNX, SUFFIX, Bundle, check_target, copy_bundle, open_bundle
from inspekt.card import ModelCard
from inspekt.data import Dataset, open_dataset
from inspekt.data.dataset import image_keys
from inspekt.engine.predictor import Predictor, seen_by, task_of
from inspekt.engine.quant_recipe import Recipe, prepare, quantize_onnx, recipes_for
from inspekt.engine.quant_report import (
    DEFAULT_MAX_DROP,
    DEFAULT_MIN_AGREEMENT,
    DEFAULT_MIN_SPEEDUP,
    AccuracyDropError,
    Int8Refused,
    QuantReport,
    SlowerInt8Error,
    int8_card,
    pick_refusal,
    refuse_if_failed,
)
from inspekt.engine.quant_speed import SpeedTimer, cpu_flags, measure_speedup
from inspekt.errors import ConfigError, DatasetError, require_number
from inspekt.models.runtime import OnnxBackend
from inspekt.progress import step
from inspekt.results import BatchReport
from inspekt.tasks import TASKS, Task

MIN_IMAGES = 8  # fewer calibration or evaluation images than this say nothing reliable
BATCH = 16
EVAL_SPLITS = ("val", "test")
__all__ = [
    "DEFAULT_MAX_DROP",
    "DEFAULT_MIN_AGREEMENT",
    "DEFAULT_MIN_SPEEDUP",
    "AccuracyDropError",
    "Int8Refused",
    "QuantReport",
    "SlowerInt8Error",
    "quantize_bundle",
]


class Recorder:
    """A backend that runs another and keeps an even sample of the inputs it was fed (at most
    ``limit`` rows: past that, every second row kept is dropped and only every 2**k-th new one kept)."""

    def __init__(self, backend: OnnxBackend, limit: int):
        self.backend, self.limit, self.name = backend, limit, backend.name
        self.rows: list[np.ndarray] = []
        self._seen, self._every = 0, 1

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """The wrapped backend's outputs; ``batch``'s rows are recorded on the way."""
        for row in batch:
            if self._seen % self._every == 0:
                self.rows.append(row.copy())
            self._seen += 1
            if len(self.rows) > self.limit:
                self.rows, self._every = self.rows[::2], self._every * 2
        return self.backend.run(batch)

    def batches(self, size: int = BATCH) -> list[np.ndarray]:
        """The recorded rows as batches of up to ``size`` rows of one shape."""
        by_shape: dict[tuple[int, ...], list[np.ndarray]] = {}
        for row in self.rows:
            by_shape.setdefault(row.shape, []).append(row)
        return [np.stack(rows[i : i + size]) for rows in by_shape.values() for i in range(0, len(rows), size)]


def calibration_dataset(card: ModelCard, calib: str | Path | Dataset | None, where: str) -> Dataset:
    """The dataset to calibrate and evaluate on: ``calib``, else the card's training data.

    Args:
        card: the model card (``data.source`` names the training data).
        calib: a dataset, a dataset folder / CSV, or None.
        where: the bundle path, for messages.

    Returns:
        The opened dataset.

    Raises:
        ConfigError: no ``calib`` and the training data named in the card is not there.
        DatasetError: the dataset cannot be read.
    """
    if isinstance(calib, Dataset):
        return calib
    if calib is None:
        source = card.data.source
        if not source or not storage.as_path(source).exists():
            named = (
                f"the training data named in its card ({source}) is not there"
                if source
                else "its card names no training data"
            )
            raise ConfigError(
                f"{where}: INT8 needs annotated calibration images and {named}; pass --calib DATA (calib= in "
                "Python: a dataset folder or CSV annotated for this model: its class labels, masks or boxes)"
            )
        calib = source
    return open_dataset(calib)


def pick_images(
    ds: Dataset, task: Task, card: ModelCard, n_calib: int, seen: frozenset[str] | None = None
) -> tuple[list[Path], Dataset]:
    """Calibration files and the annotated images that judge INT8 (see the module notes for which).

    Args:
        ds: the calibration dataset.
        task: the bundle's task (``int8_truth`` says which images can judge it).
        card: the model card.
        n_calib: most calibration images, taken evenly across the (class-sorted) pool.
        seen: the ``image_key`` of the images the model trained on (``seen_by``), or None; without val or test
            splits they calibrate and the others judge.

    Returns:
        Calibration paths and the evaluation dataset.

    Raises:
        DatasetError: no annotated images, annotations the model does not know, or too few images.
    """
    keys = image_keys([s.path for s in ds.samples]) if seen is not None else None
    trained = [s for s, key in zip(ds.samples, keys) if key in seen] if keys else []
    unseen = [s for s, key in zip(ds.samples, keys) if key not in seen] if keys else list(ds.samples)
    try:
        held_out = task.int8_truth(card, [s for s in unseen if s.split in EVAL_SPLITS])
        if trained and len(held_out) < MIN_IMAGES:  # the record says which images are new to the model
            held_out = task.int8_truth(card, unseen)
            held_out = held_out if len(held_out) >= MIN_IMAGES else []
        evaluation = (
            held_out
            or task.int8_truth(card, [s for s in ds.samples if s.split in EVAL_SPLITS])
            or task.int8_truth(card, ds.samples)
        )
    except DatasetError as exc:
        raise DatasetError(f"{ds.root}: {exc}") from None
    if trained and not held_out and evaluation:
        progress.warn(
            f"the model trained on {len(trained)} of the {len(ds)} images of {ds.root} and fewer than {MIN_IMAGES} "
            "annotated ones are new to it: INT8 is judged on images it trained on, which flatters both graphs; "
            "pass --calib with images it did not train on"
        )
    if not evaluation:
        raise DatasetError(
            f"{ds.root}: no image annotated for this {card.task} model ({ds.layout} layout), so the INT8 graph's "
            f"{', '.join(task.int8_metrics)} cannot be scored; pass --calib with an annotated dataset"
        )
    pool = (
        [s.path for s in ds.samples if s.split == "train"] or [s.path for s in trained] or [s.path for s in ds.samples]
    )
    if len(pool) > n_calib:
        pool = [pool[i] for i in np.linspace(0, len(pool) - 1, n_calib).round().astype(int)]
    for what, n in (("calibration", len(pool)), ("evaluation", len(evaluation))):
        if n < MIN_IMAGES:
            raise DatasetError(
                f"{ds.root}: only {n} {what} image(s); INT8 needs at least {MIN_IMAGES} "
                "(add images or pass --calib with a larger dataset)"
            )
    gap = task.int8_gap(card, evaluation)
    if gap:
        progress.warn(f"the {len(evaluation)} images that judge INT8 {gap}")
    return pool, replace(ds, samples=tuple(evaluation))


def judge(bundle: Bundle, task: Task, graph: bytes, evaluation: Dataset, what: str) -> Any:
    """A graph's evaluation by the task's own ``evaluate`` through the Predictor (``what`` names it: fp32, INT8)."""
    with step(f"evaluating {what} on {len(evaluation)} images", total=len(evaluation)) as advance:
        predictor = Predictor(bundle, OnnxBackend(bundle, graph=graph), BATCH, task)
        return task.evaluate(predictor, evaluation, "int8-check", advance)


def timed(timer: SpeedTimer, fp32: bytes, int8: bytes, images: np.ndarray) -> dict[int, float]:
    """``timer``'s speed ratios, shown as a step (the measurement takes seconds)."""
    with step("timing INT8 against fp32 on this CPU"):
        return timer(fp32, int8, images)


def _attempt(
    bundle: Bundle,
    task: Task,
    recipe: Recipe,
    graphs: tuple[bytes, bytes],
    recorder: Recorder,
    judged: tuple[Any, Dataset],
    base: QuantReport,
    timer: SpeedTimer,
) -> tuple[QuantReport, bytes]:
    """Quantise with one recipe, judge and time the INT8 graph: ``base`` (the figures no recipe changes) with
    the INT8 graph's filled in, and the graph.

    Args:
        graphs: the fp32 graph as the bundle holds it and as ``prepare`` returned it.
        judged: the fp32 graph's evaluation, and the images it was judged on.
    """
    (fp32_bytes, prepared), (fp32, evaluation) = graphs, judged
    with step(f"quantising ({recipe.describe()}; {len(recorder.rows)} model inputs from {base.n_calib} images)"):
        int8_bytes = quantize_onnx(prepared, recorder.batches(), recipe)
    int8 = judge(bundle, task, int8_bytes, evaluation, "INT8")
    report = replace(
        base,
        quality={
            name: (float(fp32.metrics[name]), float(int8.metrics[name]))
            for name in task.int8_metrics
            if fp32.metrics.get(name) is not None and int8.metrics.get(name) is not None
        },
        agreement=task.int8_agreement(fp32, int8),
        size_int8=len(int8_bytes),
        speedup=timed(timer, fp32_bytes, int8_bytes, np.stack(recorder.rows[:16])),
        recipe=recipe.describe(),
    )
    return report, int8_bytes


def default_output(bundle: Bundle, archive: bool) -> Path:
    """``<bundle name>-int8.inspekt`` (or a ``-int8`` folder) beside the bundle."""
    stem = bundle.path.name.removesuffix(SUFFIX)
    return bundle.path.with_name(f"{stem}-int8{SUFFIX if archive else ''}")


def _check_request(bundle: Bundle, limits: dict[str, float], n_calib: int) -> None:
    card, where = bundle.card, bundle.path
    if not task_of(bundle).int8_metrics:
        able = ", ".join(name for name, task in TASKS.items() if task.int8_metrics)
        raise ConfigError(
            f"{where}: INT8 export is available for {able} bundles only (this one is {card.task}); "
            "export it without --int8"
        )
    if card.precision == "int8":
        raise ConfigError(f"{where}: this bundle is already INT8; quantise the fp32 bundle it came from")
    for name, value, allowed in (
        ("max_drop", limits["max_drop"], "a fraction in [0, 1] (0.01 = one point)"),
        ("min_agreement", limits["min_agreement"], "a fraction in [0, 1] (0.95 = 95%)"),
        ("min_speedup", limits["min_speedup"], ">= 0 (0: any speed)"),
    ):
        require_number(name, value, allowed)
        if not (0 <= value <= 1 if name != "min_speedup" else value >= 0):
            flag = "--allow-slower" if name == "min_speedup" else f"--{name.replace('_', '-')}"
            raise ConfigError(f"{name}={value:g} ({flag} on the command line) must be {allowed}")
    if n_calib < MIN_IMAGES:
        raise ConfigError(f"n_calib {n_calib} must be at least {MIN_IMAGES}")


def quantize_bundle(
    bundle: str | Path | Bundle,
    out: str | Path | None = None,
    *,
    calib: str | Path | Dataset | None = None,
    max_drop: float = DEFAULT_MAX_DROP,
    min_agreement: float = DEFAULT_MIN_AGREEMENT,
    n_calib: int = 200,
    overwrite: bool = False,
    archive: bool = True,
    min_speedup: float = DEFAULT_MIN_SPEEDUP,
    timer: SpeedTimer | None = None,
) -> QuantReport:
    """Quantise a classifier's, a segmenter's or a detector's ONNX graph to INT8 and write it as a new bundle.

    The new bundle is a byte-for-byte copy with the INT8 ``model.onnx``, card precision ``int8``
    and the measured ``fp32_<metric>`` / ``int8_<metric>`` / ``int8_agreement`` /
    ``int8_speedup_b1`` / ``int8_speedup_b16`` in its metrics (and a note naming the CPU flags the
    speed was measured on and the recipes tried); the torch weights stay fp32. The recipes of
    ``quant_recipe.recipes_for`` are tried in order (the fastest, then the careful one) and the first
    accepted is written. Nothing is written when every one loses more than ``max_drop``, agrees on less
    than ``min_agreement`` or runs below ``min_speedup`` times fp32's speed here; the refusal raised is the
    first recipe refused for speed alone, else the one that lost least (``quant_report.pick_refusal``), and
    its report's ``tried`` holds the others.

    Args:
        bundle: bundle folder, ``.inspekt`` file, run folder or an opened Bundle.
        out: where to write (default: ``<bundle name>-int8.inspekt`` beside the bundle).
        calib: labelled dataset (folder or CSV) for calibration and the accuracy check;
            default: the training data named in the card.
        max_drop: largest accepted drop of each of the task's quality metrics (``Task.int8_metrics``: accuracy and
            macro F1, defect IoU and image F1, mAP@0.5 and box F1) as a fraction (0.01 = one percentage point).
        min_agreement: smallest share of outputs on which INT8 agrees with fp32 (labels, image verdicts, boxes).
        n_calib: most calibration images.
        overwrite: replace an existing bundle at ``out``.
        archive: write a single ``.inspekt`` file (else a folder).
        min_speedup: smallest accepted INT8 / fp32 speed ratio at batch 1 and 16 on this CPU
            (0: write INT8 even when it is slower; the figures are still measured and recorded).
        timer: ``(fp32 graph, int8 graph, images) -> {batch: ratio}`` (default: ``measure_speedup``).

    Returns:
        The measured figures and the written path.

    Raises:
        AccuracyDropError: INT8 accuracy or macro F1 dropped by more than ``max_drop``, or its labels agree
            with fp32's on fewer than ``min_agreement`` of the images (nothing written).
        SlowerInt8Error: INT8 ran below ``min_speedup`` times fp32's speed (nothing written).
        ConfigError: a task without INT8 (anomaly), already INT8, bad limits, or no calibration data.
        DatasetError: calibration data without usable labels or with too few images.
        BundleError: the bundle cannot be read, or ``out`` exists.
    """
    bundle = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    _check_request(bundle, {"max_drop": max_drop, "min_agreement": min_agreement, "min_speedup": min_speedup}, n_calib)
    out = Path(out) if out is not None else default_output(bundle, archive)
    check_target(out, archive, overwrite)  # refuse an existing output before the slow part
    card, task = bundle.card, task_of(bundle)
    seen = seen_by(bundle)
    dataset = calibration_dataset(card, calib, str(bundle.path))
    calib_paths, evaluation = pick_images(dataset, task, card, n_calib, seen and seen["train"])
    fp32_bytes, flags = bundle.read(ONNX), cpu_flags()
    recorder, calib_report = Recorder(OnnxBackend(bundle, graph=fp32_bytes), n_calib), BatchReport()
    calibrator = Predictor(bundle, recorder, BATCH, task)
    for caveat in calibrator.caveats():  # a model that failed its sanity check: INT8 can only agree with it
        progress.warn(caveat)
    with step("reading calibration images", total=len(calib_paths)) as advance:
        for start in range(0, len(calib_paths), BATCH):
            calibrator.predict(calib_paths[start : start + BATCH], report=calib_report)
            advance(len(calib_paths[start : start + BATCH]))
    if calib_report.loaded < MIN_IMAGES:
        raise DatasetError(
            f"only {calib_report.loaded} calibration image(s) could be read; INT8 needs at least "
            f"{MIN_IMAGES}. {calib_report.summary()}"
        )
    fp32 = judge(bundle, task, fp32_bytes, evaluation, "fp32")  # once, whichever recipes are tried
    base = QuantReport(  # what every attempt shares; _attempt fills in the INT8 graph's figures
        quality={},
        agreement=0.0,
        agreeing=task.int8_agreeing,
        n_images=fp32.to_dict()["n_images"],
        n_calib=calib_report.loaded,
        max_drop=max_drop,
        size_fp32=len(fp32_bytes),
        min_agreement=min_agreement,
        skipped=tuple(dict.fromkeys((*calib_report.skipped, *fp32.skipped))),
        min_speedup=min_speedup,
        cpu_flags=flags,
        data=storage.source_text(dataset.root),
    )
    prepared, refused = prepare(fp32_bytes), []
    for recipe in recipes_for(flags, prepared):  # the fast recipe first, then the careful one
        if refused:
            progress.warn(f"INT8 as {refused[-1].recipe} was refused (see below); trying {recipe.describe()}")
        graphs, judged = (fp32_bytes, prepared), (fp32, evaluation)
        report, int8_bytes = _attempt(bundle, task, recipe, graphs, recorder, judged, base, timer or measure_speedup)
        if report.accepted():
            break
        refused.append(report)
    else:
        refuse_if_failed(pick_refusal(refused), bundle.path)
    report = replace(report, tried=tuple(attempt.attempt() for attempt in refused))
    written = copy_bundle(
        bundle, out, archive=archive, overwrite=overwrite, card=int8_card(card, report), replace={ONNX: int8_bytes}
    )
    return replace(report, path=written)
