"""Training anomaly models on normal images only: pick the normal images, prepare them through the
card, fit the registered method (networks through the one loop), calibrate image and pixel thresholds on
validation, and describe the result as a card (the trainer writes the bundle and its drift reference).

Validation normal images are carved from the normal training images (``val`` fraction, seeded) unless
the data has a ``val`` split. Anomalous validation images (a ``val`` split's defects, or the defect
images of a dataset without splits) are never fitted on; they make the threshold the best-F1 one.
The ``test`` split is never touched.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inspekt import storage
from inspekt.card import AnomalySpec, DataInfo, InputSpec, ModelCard, PostProcess, library_versions, now_iso
from inspekt.config import TrainConfig
from inspekt.data import Dataset, Sample
from inspekt.data.split import split_dataset
from inspekt.errors import ConfigError, DatasetError, did_you_mean
from inspekt.io import iter_images, load_image
from inspekt.progress import step
from inspekt.results import BatchReport, SkippedFile
from inspekt.tasks.anomaly.metrics import Calibration, calibrate, normal_scale, truth_mask
from inspekt.tasks.anomaly.plots import plot_score_histogram
from inspekt.tasks.anomaly.predict import ANOMALY, raw_outputs
from inspekt.tasks.base import Fitted, device_for, input_channels
from inspekt.tiling import pad_to_window, window_boxes
from inspekt.transforms import channel_stats, prepare, preprocess_batch

MAX_WINDOWS = 20000  # tiled training: windows kept from all training images
PIXELS_PER_IMAGE = 2000  # map values kept per validation image (and per kind) to calibrate the pixel threshold


@dataclass(frozen=True)
class Partition:
    """Which images train, and which validate."""

    normal: str
    train: list[Sample]
    val_normal: list[Sample]
    val_anomalous: list[Sample]
    notes: list[str]


def normal_class(ds: Dataset, cfg: TrainConfig) -> str:
    """The class of normal images: ``cfg.normal`` or the data's good / ok / free ... class."""
    if cfg.normal is not None:
        if cfg.normal not in ds.classes:
            raise DatasetError(
                f"{cfg.data}: normal={cfg.normal!r} is not a class of the data "
                f"({', '.join(ds.classes)}).{did_you_mean(cfg.normal, ds.classes)}"
            )
        return cfg.normal
    if ds.normal_class is None:
        raise DatasetError(
            f"{cfg.data}: no class is named like a normal one (good, ok, normal, free, pass, nominal; "
            f"found {', '.join(ds.classes) or 'no labels'}); name the class of normal images with "
            "normal=<class>"
        )
    return ds.normal_class


def partition(ds: Dataset, cfg: TrainConfig) -> Partition:
    """Train / validation images for anomaly training (see the module docstring)."""
    normal = normal_class(ds, cfg)
    pool = [s for s in ds.samples if s.split != "test" and s.label is not None]
    unlabelled = sum(s.label is None for s in ds.samples)
    notes = [f"{unlabelled} image(s) without a label were left out"] if unlabelled else []
    if any(s.split == "val" for s in pool):
        train = [s for s in pool if s.split != "val" and s.label == normal]
        val = [s for s in pool if s.split == "val"]
        val_normal = [s for s in val if s.label == normal]
        val_anomalous = [s for s in val if s.label != normal]
    else:
        normal_ds = replace(ds, samples=tuple(s for s in pool if s.label == normal))
        if len(normal_ds) < 2:
            raise DatasetError(
                f"{cfg.data}: {len(normal_ds)} normal ({normal}) image(s) outside the test split; "
                "anomaly training needs at least 2 (better hundreds)"
            )
        carved = split_dataset(normal_ds, val=cfg.val, test=0.0, seed=cfg.seed)
        train, val_normal = list(carved.subset("train").samples), list(carved.subset("val").samples)
        val_anomalous = [s for s in pool if s.label != normal]
        if val_anomalous:
            notes.append(
                f"{len(val_anomalous)} non-{normal} image(s) outside a test split calibrate the threshold "
                "(never fitted on); evaluate on other images"
            )
    if not train:
        raise DatasetError(
            f"{cfg.data}: no normal ({normal}) training images; anomaly models learn from normal "
            "images (train/good in the MVTec layout)"
        )
    if not val_normal:
        raise DatasetError(
            f"{cfg.data}: no normal validation images to calibrate the threshold; add some or raise val="
        )
    return Partition(normal, train, val_normal, val_anomalous, notes)


def _prepared(samples: list[Sample], spec: InputSpec, report: BatchReport) -> tuple[list[np.ndarray], list[str]]:
    """Prepared uint8 images (HxWxC) and their paths; unreadable files are skipped and reported."""
    images, paths = [], []
    with step("caching training images", len(samples)) as advance:
        for source, image in iter_images([s.path for s in samples], mode="keep", report=report):
            prepared, _ = prepare(image, spec)
            images.append(prepared if prepared.ndim == 3 else prepared[:, :, None])
            paths.append(source)
            advance()
    return images, paths


def _windows(images: list[np.ndarray], spec: InputSpec, seed: int) -> np.ndarray:
    """Tiled training: the windows of every scaled image that tiled prediction will see (a seeded
    subset of at most MAX_WINDOWS)."""
    wh, ww = spec.size
    found = []
    for image in images:
        padded = pad_to_window(image, spec.size)
        padded = padded if padded.ndim == 3 else padded[:, :, None]
        found += [padded[y : y + wh, x : x + ww] for y, x in window_boxes(padded.shape[:2], spec)]
    if len(found) > MAX_WINDOWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(found), MAX_WINDOWS, replace=False))
        found = [found[i] for i in keep]
    return np.stack(found)


def read_groups(
    cfg: TrainConfig, ds: Dataset, paths: list[str], normal: str
) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Each training image's normal variant: sub-folders of the normal class, a CSV column, or None."""
    if cfg.groups == "none":
        return None, ()
    if cfg.groups == "auto":  # sub-folders of the normal class's folder, e.g. train/good/<variant>/x.png
        parents = [Path(p).parent for p in paths]
        if not all(parent.parent.name.lower() == normal.lower() for parent in parents):
            return None, ()  # no variant folders: the model finds the variants itself
        names = [parent.name for parent in parents]
    else:
        names = _groups_from_csv(Path(cfg.groups), cfg.groups_column, paths)
    found = tuple(sorted(set(names)))
    return np.array([found.index(n) for n in names]), found


def _groups_from_csv(path: Path, column: str, paths: list[str]) -> list[str]:
    if not path.is_file():
        raise ConfigError(
            f"groups={path}: no such CSV; give a CSV with a 'path' column and a '{column}' column, "
            "or groups=auto / none"
        )
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0] or column not in rows[0]:
        raise ConfigError(
            f"{path}: needs columns 'path' and '{column}' (found {', '.join(rows[0]) if rows else 'none'}); "
            "set groups_column=<name>"
        )
    by_path = {str((path.parent / r["path"]).resolve()): r[column] for r in rows}  # relative to the CSV, as datasets
    missing = [p for p in paths if str(Path(p).resolve()) not in by_path]
    if missing:
        raise ConfigError(f"{path}: no {column} for {len(missing)} training image(s), e.g. {missing[0]}")
    return [by_path[str(Path(p).resolve())] or "(none)" for p in paths]


@dataclass
class ValStats:
    """What calibration needs from the validation images, reduced as they stream past (memory stays
    bounded whatever the number and size of the images): image scores, each normal image's largest
    map value, and samples of normal pixels and of masked / unmasked pixels of anomalous images."""

    normal_scores: list[float] = field(default_factory=list)
    anomalous_scores: list[float] = field(default_factory=list)
    normal_maxima: list[float] = field(default_factory=list)
    normal_pixels: list[np.ndarray] = field(default_factory=list)
    positives: list[np.ndarray] = field(default_factory=list)
    negatives: list[np.ndarray] = field(default_factory=list)

    def add(self, out, sample: Sample, anomalous: bool, rng: np.random.Generator, report: BatchReport) -> None:
        pick = lambda values: values if values.size <= PIXELS_PER_IMAGE else rng.choice(values, PIXELS_PER_IMAGE)  # noqa: E731
        if not anomalous:
            self.normal_scores.append(out.score)
            self.normal_maxima.append(float(out.anomaly_map.max()))
            self.normal_pixels.append(pick(out.anomaly_map.ravel()))
            return
        self.anomalous_scores.append(out.score)
        try:
            truth = truth_mask(sample, out.anomaly_map.shape)
        except DatasetError as exc:
            report.skipped.append(SkippedFile(str(sample.path), str(exc)))
            return
        if truth is not None and truth.any():
            self.positives.append(pick(out.anomaly_map[truth]))
            self.negatives.append(pick(out.anomaly_map[~truth]))


def _reduce(stats: ValStats, chunk, by_path, anomalous: bool, spec: InputSpec, run, rng, report: BatchReport) -> None:
    outputs = raw_outputs([image for _, image in chunk], spec, run, max(1, len(chunk)))
    for (path, _), out in zip(chunk, outputs):
        stats.add(out, by_path[path], anomalous, rng, report)


def _validate(network, parts: Partition, spec: InputSpec, batch: int, seed: int, report: BatchReport) -> ValStats:
    """Run the validation images through the Predictor's own anomaly path and reduce the outputs."""
    from inspekt.models.runtime import TorchBackend

    run, stats, rng = TorchBackend.of(network, network.outputs).run, ValStats(), np.random.default_rng(seed)
    total = len(parts.val_normal) + len(parts.val_anomalous)
    with step("calibrating on validation images", total) as advance:
        for anomalous, samples in ((False, parts.val_normal), (True, parts.val_anomalous)):
            by_path = {str(s.path): s for s in samples}
            chunk: list[tuple[str, np.ndarray]] = []
            for item in iter_images([s.path for s in samples], mode="keep", report=report):
                chunk.append(item)
                if len(chunk) == batch:
                    _reduce(stats, chunk, by_path, anomalous, spec, run, rng, report)
                    advance(len(chunk))
                    chunk = []
            _reduce(stats, chunk, by_path, anomalous, spec, run, rng, report)
            advance(len(chunk))
    return stats


def _pixel_calibration(stats: ValStats, cfg: TrainConfig) -> Calibration:
    """Pixel threshold: best F1 over pixels when anomalous validation images have masks, else the
    image rule applied to the largest map value of each normal validation image (so a normal image's
    mask is empty as often as its verdict is normal). The scale comes from all normal pixels, so a
    normal image's background shows at about 0.05."""
    if cfg.calibration in ("auto", "f1") and stats.positives:
        negatives = np.concatenate(stats.normal_pixels + stats.negatives)
        found = calibrate(negatives, np.concatenate(stats.positives), "f1", cfg.quantile, cfg.sigma)
        found = replace(found, method=found.method.replace("images", "pixels"))
    else:
        method = "quantile" if cfg.calibration in ("auto", "f1") else cfg.calibration
        found = calibrate(np.array(stats.normal_maxima), None, method, cfg.quantile, cfg.sigma)
    return replace(found, scale=normal_scale(np.concatenate(stats.normal_pixels), found.threshold))


def _val_metrics(normal_scores: np.ndarray, anomalous_scores: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    metrics = {
        "val_false_alarm_rate": round(float((normal_scores >= threshold).mean()), 4),
        "val_normal_images": float(len(normal_scores)),
    }
    if len(anomalous_scores):
        truth = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomalous_scores))]
        scores = np.r_[normal_scores, anomalous_scores]
        metrics["val_image_auroc"] = round(float(roc_auc_score(truth, scores)), 4)
        metrics["val_recall"] = round(float((anomalous_scores >= threshold).mean()), 4)
    return metrics


def _settings(cfg: TrainConfig, loop, log: Callable[[dict], None]):
    """Fit settings: the user's epochs / batch / lr when given, else each method's own defaults."""
    from inspekt.models.anomaly.base import FitSettings

    given = cfg.model_fields_set
    pick = lambda key: getattr(cfg, key) if key in given else None  # noqa: E731
    return FitSettings(
        epochs=pick("epochs"),
        batch=pick("batch"),
        lr=pick("lr"),
        seed=cfg.seed,
        device=device_for(cfg),
        amp=cfg.amp,
        log=log,
        loop=loop,
    )


class AnomalyTraining:
    """One anomaly run: ``AnomalyTraining(cfg, ds).fit(hooks, run_dir)`` -> ``Fitted``.

    The constructor picks the normal images, builds the method (bad parameters fail before any
    decoding) and prepares the images; ``fit`` fits the method (networks through the one loop),
    calibrates image and pixel thresholds on validation and describes the result as a card.
    """

    def __init__(self, cfg: TrainConfig, ds: Dataset):
        import torch

        from inspekt.models import create_model, get_entry
        from inspekt.models.anomaly.base import FitData

        get_entry(cfg.model, "anomaly")
        decided = sorted({"in_chans", "input_size"} & set(cfg.model_params))
        if decided:
            raise ConfigError(
                f"model_params.{decided[0]} is set from the data and imgsz (channels=, imgsz=); remove it"
            )
        torch.manual_seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.cfg, self.ds = cfg, ds
        self.parts = partition(ds, cfg)
        channels = input_channels(replace(ds, samples=tuple(self.parts.train)), cfg)
        self.network = create_model(cfg.model, in_chans=channels, input_size=cfg.imgsz, **cfg.model_params)
        spec = InputSpec(
            size=(cfg.imgsz, cfg.imgsz),
            channels=channels,
            mean=(0.5,) * channels,
            std=(0.25,) * channels,
            resize="stretch" if cfg.resize == "auto" else cfg.resize,
            clahe=cfg.clahe,
            scale=cfg.scale,
            overlap=cfg.overlap,
        )
        self.report = BatchReport()
        images, self.paths = _prepared(self.parts.train, spec, self.report)
        if len(images) < 2:
            raise DatasetError(f"{cfg.data}: only {len(images)} readable normal training image(s); add images")
        tiled = spec.resize == "tile"
        stack = _windows(images, spec, cfg.seed) if tiled else np.stack(images)
        mean, std = channel_stats(lambda i: stack[i], len(stack), channels)
        self.spec = spec.model_copy(update={"mean": mean, "std": std})
        groups, names = (None, ()) if tiled else read_groups(cfg, ds, self.paths, self.parts.normal)  # windows: none
        self.data = FitData(stack, mean, std, groups, names)

    def fit(self, hooks: Any, run_dir: Path) -> Fitted:
        """Fit, calibrate on validation, plot the validation scores; the card of the result.

        Raises:
            ConfigError: a fit that diverged or a calibration that cannot be made.
            DatasetError: none of the normal validation images could be read.
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        network = self.network.fit(self.data, _settings(cfg, hooks.loop, hooks.progress)).cpu().eval()
        fit_seconds = time.perf_counter() - t0
        stats = _validate(network, self.parts, self.spec, cfg.batch, cfg.seed, self.report)
        if not stats.normal_scores:
            raise DatasetError(f"{cfg.data}: none of the normal validation images could be read")
        try:
            image_cal = calibrate(
                np.array(stats.normal_scores),
                np.array(stats.anomalous_scores),
                cfg.calibration,
                cfg.quantile,
                cfg.sigma,
            )
            pixel_cal = _pixel_calibration(stats, cfg)
        except ValueError as exc:
            raise ConfigError(f"{cfg.model}: {exc}") from None
        metrics = _val_metrics(np.array(stats.normal_scores), np.array(stats.anomalous_scores), image_cal.threshold)
        metrics |= {"fit_seconds": round(fit_seconds, 1), "train_images": float(len(self.paths))}
        warnings = [w for w in (image_cal.warning, pixel_cal.warning) if w]
        notes = list(self.parts.notes) + list(network.notes()) + list(dict.fromkeys(warnings))  # each said once
        plot_score_histogram(
            stats.normal_scores,
            stats.anomalous_scores,
            image_cal.threshold,
            run_dir / "val_scores.png",
            title=f"{cfg.model}: validation scores",
        )
        card = self._card(network, image_cal, pixel_cal, metrics, notes)
        decoded = [load_image(p, mode="keep") for p in self.paths[:4]]
        samples = preprocess_batch(decoded, self.spec)[0] if self.spec.resize != "tile" else None
        val_files = [str(s.path) for s in self.parts.val_normal]
        calibrated = [str(s.path) for s in self.parts.val_anomalous]
        return Fitted(network, card, samples, self.paths, val_files, self.report, notes, calibrated)

    def _card(self, network, image_cal: Calibration, pixel_cal: Calibration, metrics: dict, notes: list[str]):
        cfg = self.cfg
        anomaly = AnomalySpec(
            image_threshold=image_cal.threshold,
            image_scale=image_cal.scale,
            pixel_threshold=pixel_cal.threshold,
            pixel_scale=pixel_cal.scale,
            calibration=f"image: {image_cal.method}; pixel: {pixel_cal.method}",
        )
        params = network.card_params()  # with the epochs / lr / batch the user gave, where the method records them
        params |= {
            key: getattr(cfg, key) for key in ("epochs", "lr", "batch") if key in params and key in cfg.model_fields_set
        }
        return ModelCard(
            task="anomaly",
            architecture=cfg.model,
            params=params,
            classes=(self.parts.normal, ANOMALY),
            input=self.spec,
            anomaly=anomaly,
            postprocess=PostProcess(threshold=0.5, min_area=0, kernel=cfg.kernel),
            outputs=network.outputs,
            notes=tuple(notes),
            data=DataInfo(
                fingerprint=self.ds.fingerprint(), source=storage.source_text(cfg.data), n_samples=len(self.paths)
            ),
            metrics=metrics,
            versions=library_versions(),
            created_at=now_iso(),
        )
