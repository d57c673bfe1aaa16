"""Training anomaly models on normal images only: pick the normal images, prepare them through the
card, fit the registered method, calibrate image and pixel thresholds on validation, and write a
parity-checked bundle with its drift reference.

Validation normal images are carved from the normal training images (``val`` fraction, seeded) unless
the data has a ``val`` split. Anomalous validation images (a ``val`` split's defects, or the defect
images of a dataset without splits) are never fitted on; they make the threshold the best-F1 one.
The ``test`` split is never touched.
"""

from __future__ import annotations

import csv
import json
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np

from .anomaly import ANOMALY, raw_outputs
from .anomaly_metrics import Calibration, calibrate, normal_scale
from .card import AnomalySpec, DataInfo, InputSpec, ModelCard, PostProcess, library_versions, now_iso
from .config import TrainConfig
from .data import Dataset, Sample, open_dataset
from .data.split import split_dataset
from .errors import ConfigError, DatasetError
from .io import BatchReport, iter_images, load_image
from .segment import pad_to_window, window_starts
from .transforms import channel_stats, prepare

DEFAULT_METHOD = "draem"
MAX_WINDOWS = 20000  # tiled training: windows kept from all training images
PIXEL_SAMPLE = 200_000  # pixels per kind used to calibrate the pixel threshold against masks


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
            from .errors import did_you_mean

            raise DatasetError(f"{cfg.data}: normal={cfg.normal!r} is not a class of the data "
                               f"({', '.join(ds.classes)}).{did_you_mean(cfg.normal, ds.classes)}")
        return cfg.normal
    if ds.normal_class is None:
        raise DatasetError(f"{cfg.data}: no class is named like a normal one (good, ok, normal, free, pass, nominal; "
                           f"found {', '.join(ds.classes) or 'no labels'}); name the class of normal images with "
                           "normal=<class>")
    return ds.normal_class


def partition(ds: Dataset, cfg: TrainConfig) -> Partition:
    """Train / validation images for anomaly training (see the module docstring)."""
    normal = normal_class(ds, cfg)
    pool = [s for s in ds.samples if s.split != "test"]
    notes = []
    if any(s.split == "val" for s in pool):
        train = [s for s in pool if s.split != "val" and s.label == normal]
        val = [s for s in pool if s.split == "val"]
        val_normal = [s for s in val if s.label == normal]
        val_anomalous = [s for s in val if s.label != normal]
    else:
        normal_ds = replace(ds, samples=tuple(s for s in pool if s.label == normal))
        if len(normal_ds) < 2:
            raise DatasetError(f"{cfg.data}: {len(normal_ds)} normal ({normal}) image(s) outside the test split; "
                               "anomaly training needs at least 2 (better hundreds)")
        carved = split_dataset(normal_ds, val=cfg.val, test=0.0, seed=cfg.seed)
        train, val_normal = list(carved.subset("train").samples), list(carved.subset("val").samples)
        val_anomalous = [s for s in pool if s.label != normal]
        if val_anomalous:
            notes.append(f"{len(val_anomalous)} non-{normal} image(s) outside a test split calibrate the threshold "
                         "(never fitted on); evaluate on other images")
    if not train:
        raise DatasetError(f"{cfg.data}: no normal ({normal}) training images; anomaly models learn from normal "
                           "images (train/good in the MVTec layout)")
    if not val_normal:
        raise DatasetError(f"{cfg.data}: no normal validation images to calibrate the threshold; add some or raise val=")
    return Partition(normal, train, val_normal, val_anomalous, notes)


def _prepared(samples: list[Sample], spec: InputSpec, report: BatchReport) -> tuple[list[np.ndarray], list[str]]:
    """Prepared uint8 images (HxWxC) and their paths; unreadable files are skipped and reported."""
    images, paths = [], []
    for source, image in iter_images([s.path for s in samples], mode="keep", report=report):
        prepared, _ = prepare(image, spec)
        images.append(prepared if prepared.ndim == 3 else prepared[:, :, None])
        paths.append(source)
    return images, paths


def _windows(images: list[np.ndarray], spec: InputSpec, seed: int) -> np.ndarray:
    """Tiled training: the windows of every scaled image that tiled prediction will see (a seeded
    subset of at most MAX_WINDOWS)."""
    wh, ww = spec.size
    found = []
    for image in images:
        padded = pad_to_window(image, spec.size)
        padded = padded if padded.ndim == 3 else padded[:, :, None]
        for y in window_starts(padded.shape[0], wh, spec.overlap):
            for x in window_starts(padded.shape[1], ww, spec.overlap):
                found.append(padded[y : y + wh, x : x + ww])
    if len(found) > MAX_WINDOWS:
        keep = np.sort(np.random.default_rng(seed).choice(len(found), MAX_WINDOWS, replace=False))
        found = [found[i] for i in keep]
    return np.stack(found)


def read_groups(cfg: TrainConfig, ds: Dataset, paths: list[str], normal: str) -> tuple[np.ndarray | None, tuple[str, ...]]:
    """Each training image's normal variant: sub-folders of the normal class, a CSV column, or None."""
    if cfg.groups == "none":
        return None, ()
    if cfg.groups == "auto":
        names = [Path(p).parent.name for p in paths]
        if any(name.lower() == normal.lower() for name in names):
            return None, ()  # images directly in the normal folder: let the model find variants
    else:
        names = _groups_from_csv(Path(cfg.groups), cfg.groups_column, paths)
    found = tuple(sorted(set(names)))
    return np.array([found.index(n) for n in names]), found


def _groups_from_csv(path: Path, column: str, paths: list[str]) -> list[str]:
    if not path.is_file():
        raise ConfigError(f"groups={path}: no such CSV; give a CSV with a 'path' column and a '{column}' column, "
                          "or groups=auto / none")
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "path" not in rows[0] or column not in rows[0]:
        raise ConfigError(f"{path}: needs columns 'path' and '{column}' (found {', '.join(rows[0]) if rows else 'none'}); "
                          "set groups_column=<name>")
    by_path = {str((path.parent / r["path"]).resolve()): r[column] for r in rows}  # relative to the CSV, as datasets
    missing = [p for p in paths if str(Path(p).resolve()) not in by_path]
    if missing:
        raise ConfigError(f"{path}: no {column} for {len(missing)} training image(s), e.g. {missing[0]}")
    return [by_path[str(Path(p).resolve())] or "(none)" for p in paths]


def _torch_runner(network):
    """The fitted network as the Predictor's ``run`` (NCHW float32 -> outputs by name)."""
    import torch

    def run(batch: np.ndarray) -> dict[str, np.ndarray]:
        with torch.inference_mode():
            out = network(torch.from_numpy(batch))
        return {name: t.numpy() for name, t in zip(network.outputs, out)}

    return run


def _val_outputs(network, samples: list[Sample], spec: InputSpec, batch: int, report: BatchReport):
    """Raw outputs of validation images through the Predictor's own anomaly path, with their samples."""
    by_path = {str(s.path): s for s in samples}
    run, outputs, kept = _torch_runner(network), [], []
    chunk: list[tuple[str, np.ndarray]] = []
    for item in iter_images([s.path for s in samples], mode="keep", report=report):
        chunk.append(item)
        if len(chunk) == batch:
            outputs += raw_outputs([c[1] for c in chunk], spec, run, batch)
            kept += [by_path[c[0]] for c in chunk]
            chunk = []
    if chunk:
        outputs += raw_outputs([c[1] for c in chunk], spec, run, batch)
        kept += [by_path[c[0]] for c in chunk]
    return outputs, kept


def truth_mask(sample: Sample, shape: tuple[int, int]) -> np.ndarray | None:
    """The sample's anomaly mask as booleans (mask value >= 128), or None without a mask file.

    Raises:
        DatasetError: an unreadable mask or one of another size than its image.
    """
    from .masks import MaskRule

    return None if sample.mask is None else MaskRule("binary", ("normal", ANOMALY)).target(sample, shape) > 0


def _pixel_calibration(normal_out, anomalous_out, anomalous_samples, cfg: TrainConfig, rng) -> Calibration:
    """Pixel threshold: best F1 over pixels when anomalous validation images have masks, else the
    image rule applied to the largest map value of each normal validation image (so a normal image's
    mask is empty as often as its verdict is normal)."""
    positives, negatives = [], [o.anomaly_map.ravel() for o in normal_out]
    for out, sample in zip(anomalous_out, anomalous_samples):
        truth = truth_mask(sample, out.anomaly_map.shape)
        if truth is not None and truth.any():
            positives.append(out.anomaly_map[truth])
            negatives.append(out.anomaly_map[~truth])
    method = "quantile" if cfg.calibration in ("auto", "f1") else cfg.calibration
    maxima = np.array([o.anomaly_map.max() for o in normal_out])
    normal_pixels = np.concatenate([o.anomaly_map.ravel() for o in normal_out])
    normal_pixels = normal_pixels if len(normal_pixels) <= PIXEL_SAMPLE else rng.choice(normal_pixels, PIXEL_SAMPLE)
    if cfg.calibration in ("auto", "f1") and positives:
        pos, neg = np.concatenate(positives), np.concatenate(negatives)
        pos = pos if len(pos) <= PIXEL_SAMPLE else rng.choice(pos, PIXEL_SAMPLE, replace=False)
        neg = neg if len(neg) <= PIXEL_SAMPLE else rng.choice(neg, PIXEL_SAMPLE, replace=False)
        found = calibrate(neg, pos, "f1", cfg.quantile, cfg.sigma)
        found = replace(found, method=found.method.replace("images", "pixels"))
    else:
        found = calibrate(maxima, None, method, cfg.quantile, cfg.sigma)
    # the scale comes from all normal pixels, so a normal image's background shows at about 0.05
    return replace(found, scale=normal_scale(normal_pixels, found.threshold))


def _val_metrics(normal_scores: np.ndarray, anomalous_scores: np.ndarray, threshold: float) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    metrics = {"val_false_alarm_rate": round(float((normal_scores >= threshold).mean()), 4),
               "val_normal_images": float(len(normal_scores))}
    if len(anomalous_scores):
        truth = np.r_[np.zeros(len(normal_scores)), np.ones(len(anomalous_scores))]
        scores = np.r_[normal_scores, anomalous_scores]
        metrics["val_image_auroc"] = round(float(roc_auc_score(truth, scores)), 4)
        metrics["val_recall"] = round(float((anomalous_scores >= threshold).mean()), 4)
    return metrics


def _settings(cfg: TrainConfig, log: Callable[[dict], None]):
    """Fit settings: the user's epochs / batch / lr when given, else each method's own defaults."""
    from .models.anomaly.base import FitSettings
    from .training import _device

    given = cfg.model_fields_set
    pick = lambda key: getattr(cfg, key) if key in given else None  # noqa: E731
    return FitSettings(epochs=pick("epochs"), batch=pick("batch"), lr=pick("lr"), seed=cfg.seed,
                       device=_device(cfg), log=log)


def train_anomaly(cfg: TrainConfig, run_dir: Path, on_progress: Callable[[dict], None] | None = None):
    """Fit, calibrate and bundle an anomaly model into ``run_dir`` (see the module docstring).

    Returns:
        A ``training.TrainResult``.

    Raises:
        ConfigError: an unknown method or parameter, or a bad groups CSV.
        DatasetError: no normal class, too few readable normal images.
    """
    import torch

    from .bundle import save_bundle
    from .drift.reference import write_reference
    from .models import create_model, get_entry
    from .models.anomaly.base import FitData
    from .plots import plot_score_histogram
    from .training import RESULTS, TrainResult, _channels, _write_results

    model = cfg.model
    get_entry(model, "anomaly")
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    ds = open_dataset(cfg.data)
    parts = partition(ds, cfg)
    channels = _channels(replace(ds, samples=tuple(parts.train)), cfg)
    decided = sorted({"in_chans", "input_size"} & set(cfg.model_params))
    if decided:
        raise ConfigError(f"model_params.{decided[0]} is set from the data and imgsz (channels=, imgsz=); remove it")
    network = create_model(model, in_chans=channels, input_size=cfg.imgsz, **cfg.model_params)
    spec = InputSpec(size=(cfg.imgsz, cfg.imgsz), channels=channels, mean=(0.5,) * channels, std=(0.25,) * channels,
                     resize="stretch" if cfg.resize == "auto" else cfg.resize, clahe=cfg.clahe, scale=cfg.scale,
                     overlap=cfg.overlap)
    report = BatchReport()
    images, paths = _prepared(parts.train, spec, report)
    if len(images) < 2:
        raise DatasetError(f"{cfg.data}: only {len(images)} readable normal training image(s); add images")
    stack = _windows(images, spec, cfg.seed) if spec.resize == "tile" else np.stack(images)
    mean, std = channel_stats(lambda i: stack[i], len(stack), channels)
    spec = spec.model_copy(update={"mean": mean, "std": std})
    groups, group_names = read_groups(cfg, ds, paths, parts.normal)
    history: list[dict] = []

    def log(row: dict) -> None:
        if "epoch" in row:  # epochs go to results.csv as they finish (the workbench follows them)
            history.append(row)
            _write_results(history, run_dir / RESULTS)
        if on_progress:
            on_progress(row)

    t0 = time.perf_counter()
    network.fit(FitData(stack, mean, std, groups, group_names), _settings(cfg, log))
    fit_seconds = time.perf_counter() - t0
    network = network.cpu().eval()
    normal_out, _ = _val_outputs(network, parts.val_normal, spec, cfg.batch, report)
    anomalous_out, anomalous_kept = _val_outputs(network, parts.val_anomalous, spec, cfg.batch, report)
    if not normal_out:
        raise DatasetError(f"{cfg.data}: none of the normal validation images could be read")
    normal_scores = np.array([o.score for o in normal_out])
    anomalous_scores = np.array([o.score for o in anomalous_out])
    image_cal = calibrate(normal_scores, anomalous_scores, cfg.calibration, cfg.quantile, cfg.sigma)
    pixel_cal = _pixel_calibration(normal_out, anomalous_out, anomalous_kept, cfg, np.random.default_rng(cfg.seed))
    notes = list(parts.notes) + list(network.notes()) + [w for w in (image_cal.warning, pixel_cal.warning) if w]
    card_params = network.card_params()
    anomaly_spec = AnomalySpec(image_threshold=image_cal.threshold, image_scale=image_cal.scale,
                               pixel_threshold=pixel_cal.threshold, pixel_scale=pixel_cal.scale,
                               calibration=f"image: {image_cal.method}; pixel: {pixel_cal.method}",
                               groups=tuple(card_params.get("group_names", group_names)))
    metrics = _val_metrics(normal_scores, anomalous_scores, image_cal.threshold)
    metrics |= {"fit_seconds": round(fit_seconds, 1), "train_images": float(len(stack))}
    versions = library_versions()
    card = ModelCard(task="anomaly", architecture=model, params=card_params, classes=(parts.normal, ANOMALY),
                     input=spec, anomaly=anomaly_spec, postprocess=PostProcess(threshold=0.5, min_area=0,
                                                                              kernel=cfg.kernel),
                     outputs=network.outputs, notes=tuple(notes), data=DataInfo(
                         fingerprint=ds.fingerprint(), source=str(cfg.data), n_samples=len(stack)),
                     metrics=metrics, versions=versions, created_at=now_iso())
    from .transforms import preprocess_batch

    decoded = [load_image(p, mode="keep") for p in paths[:4]]
    samples = preprocess_batch(decoded, spec)[0] if spec.resize != "tile" else None
    bundle, parity = save_bundle(network, card, run_dir / "bundle", samples=samples, overwrite=True)
    write_reference(bundle, paths, seed=cfg.seed)
    _write_run_files(run_dir, versions, report)
    plot_score_histogram(normal_scores, anomalous_scores, image_cal.threshold, run_dir / "val_scores.png",
                         title=f"{model}: validation scores")
    return TrainResult(run_dir, bundle, metrics, parity, report, history, False, notes)


def _write_run_files(run_dir: Path, versions: dict, report: BatchReport) -> None:
    (run_dir / "versions.json").write_text(json.dumps(versions, indent=2) + "\n", encoding="utf-8")
    if report.skipped:
        (run_dir / "skipped.txt").write_text(report.summary() + "\n", encoding="utf-8")

