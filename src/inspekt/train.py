"""One explicit training loop: data -> RAM cache (through the card's preprocessing) -> AdamW +
cosine schedule -> best-on-validation checkpoint -> a parity-checked bundle in the run folder.

The images are decoded and resized once, with the same functions the Predictor uses, and
kept as uint8 in memory; every epoch after the first costs no decoding.
"""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .bundle import ParityReport, save_bundle
from .card import DataInfo, InputSpec, ModelCard, library_versions, now_iso
from .config import TrainConfig, save_config
from .data import Dataset, open_dataset
from .data.split import split_dataset
from .errors import ConfigError, DatasetError
from .io import BatchReport, iter_images
from .runs import new_run_dir
from .transforms import normalize, prepare

EpochCallback = Callable[[dict], None]


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    bundle: Path
    metrics: dict[str, float]
    parity: ParityReport
    skipped: BatchReport
    history: list[dict] = field(default_factory=list)


def _train_val(ds: Dataset, cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    if "val" in ds.splits:
        return ds.subset("train"), ds.subset("val")
    pool = ds.subset("train") if "train" in ds.splits else ds
    carved = split_dataset(pool, val=cfg.val, test=0.0, seed=cfg.seed)
    return carved.subset("train"), carved.subset("val")


def _cache(ds: Dataset, spec: InputSpec, report: BatchReport, split: str) -> tuple[np.ndarray, list[str]]:
    """Decode + resize every image once; uint8 NHW(C) in RAM, with its labels."""
    labels = {str(s.path): s.label for s in ds.samples}
    images, kept = [], []
    for source, image in iter_images([s.path for s in ds.samples], mode="keep", report=report):
        images.append(prepare(image, spec)[0])
        kept.append(labels[source])
    if not images:
        raise DatasetError(f"{ds.root}: the {split} split has no readable images; add images or lower val=")
    return np.stack(images), kept


def _channels(ds: Dataset, cfg: TrainConfig) -> int:
    if cfg.channels != "auto":
        return int(cfg.channels)
    for _, image in iter_images([s.path for s in ds.samples[:32]], mode="keep", report=BatchReport()):
        if image.ndim == 3:
            return 3
    return 1


def _stats(cached: np.ndarray, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pixels = cached.reshape(-1, channels).astype(np.float64) / 255
    return tuple(pixels.mean(0).round(4).tolist()), tuple(np.maximum(pixels.std(0), 1e-3).round(4).tolist())


def _macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    f1s = []
    for c in range(n_classes):
        tp = np.sum((y_pred == c) & (y_true == c))
        denom = np.sum(y_pred == c) + np.sum(y_true == c)
        f1s.append(2 * tp / denom if denom else 0.0)
    return float(np.mean(f1s))


def _evaluate(network, x: np.ndarray, y: np.ndarray, spec: InputSpec, n_classes: int, batch: int) -> dict:
    import torch

    network.eval()
    preds = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            inputs = torch.from_numpy(np.stack([normalize(im, spec) for im in x[i : i + batch]]))
            preds.append(network(inputs).argmax(1).numpy())
    pred = np.concatenate(preds)
    return {"val_accuracy": float(np.mean(pred == y)), "val_macro_f1": _macro_f1(y, pred, n_classes)}


def _fit(network, x, y, x_val, y_val, spec: InputSpec, cfg: TrainConfig, n_classes: int,
         on_epoch: EpochCallback | None) -> tuple[dict, list[dict]]:
    import torch

    optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=cfg.epochs)
    generator = np.random.default_rng(cfg.seed)
    best, best_state, history, stale = -1.0, None, [], 0
    for epoch in range(1, cfg.epochs + 1):
        network.train()
        t0, losses = time.perf_counter(), []
        for idx in np.array_split(generator.permutation(len(x)), max(1, len(x) // cfg.batch)):
            inputs = torch.from_numpy(np.stack([normalize(im, spec) for im in x[idx]]))
            loss = torch.nn.functional.cross_entropy(network(inputs), torch.from_numpy(y[idx]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        row = {"epoch": epoch, "train_loss": float(np.mean(losses)), "lr": scheduler.get_last_lr()[0]}
        scheduler.step()
        row |= _evaluate(network, x_val, y_val, spec, n_classes, cfg.batch)
        row["seconds"] = round(time.perf_counter() - t0, 3)
        history.append(row)
        if on_epoch:
            on_epoch(row)
        if row["val_macro_f1"] > best:
            best, stale = row["val_macro_f1"], 0
            best_state = {k: v.detach().clone() for k, v in network.state_dict().items()}
        else:
            stale += 1
            if stale >= cfg.patience:
                break
    network.load_state_dict(best_state)
    return max(history, key=lambda r: r["val_macro_f1"]), history


def _write_history(history: list[dict], path: Path) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def train(cfg: TrainConfig, *, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train a model as configured and write its run folder and bundle.

    Args:
        cfg: the validated training config.
        on_epoch: called with each epoch's metrics row (progress display).

    Returns:
        The run folder, bundle path, best validation metrics and parity report.

    Raises:
        ConfigError: a task this version cannot train yet, or a dataset unfit for the task.
        DatasetError: the dataset cannot be read.
    """
    import torch

    from .models import create_model, get_entry

    if cfg.task != "classify":
        raise ConfigError(f"training {cfg.task} models is not available in this version; use task classify")
    get_entry(cfg.model, cfg.task)
    decided = sorted({"num_classes", "in_chans"} & set(cfg.model_params))
    if decided:
        raise ConfigError(f"model_params.{decided[0]} is set from the data (classes, channels=...); remove it")
    ds = open_dataset(cfg.data)
    if len(ds.classes) < 2:
        raise DatasetError(f"{cfg.data}: classification needs at least 2 classes, found {list(ds.classes)}")
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    train_ds, val_ds = _train_val(ds, cfg)
    channels, report = _channels(train_ds, cfg), BatchReport()
    params = {"num_classes": len(ds.classes), "in_chans": channels, **cfg.model_params}
    network = create_model(cfg.model, **params)  # bad parameters fail here, before any decoding
    spec = InputSpec(size=(cfg.imgsz, cfg.imgsz), channels=channels, mean=(0.5,) * channels,
                     std=(0.25,) * channels, resize=cfg.resize)
    x, y_names = _cache(train_ds, spec, report, "training")
    x_val, y_val_names = _cache(val_ds, spec, report, "validation")
    mean, std = _stats(x, channels)
    spec = spec.model_copy(update={"mean": mean, "std": std})
    index = {c: i for i, c in enumerate(ds.classes)}
    y, y_val = np.array([index[n] for n in y_names]), np.array([index[n] for n in y_val_names])
    run_dir = new_run_dir(cfg.out, cfg.task, cfg.name, exist_ok=cfg.exist_ok)
    save_config(cfg, run_dir / "config.yaml")
    best, history = _fit(network, x, y, x_val, y_val, spec, cfg, len(ds.classes), on_epoch)
    _write_history(history, run_dir / "results.csv")
    card = ModelCard(
        task=cfg.task, architecture=cfg.model, params=params, classes=ds.classes, input=spec,
        data=DataInfo(fingerprint=ds.fingerprint(), source=str(cfg.data), n_samples=len(x)),
        metrics={k: round(v, 4) for k, v in best.items() if k.startswith("val_")},
        versions=library_versions(), created_at=now_iso(),
    )
    samples = np.stack([normalize(im, spec) for im in x_val[:8]])
    bundle, parity = save_bundle(network, card, run_dir / "bundle", samples=samples, overwrite=True)
    return TrainResult(run_dir, bundle, card.metrics, parity, report, history)
