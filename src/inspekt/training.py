"""One explicit classification training loop.

data -> RAM cache through the card's preprocessing -> augmentation -> AdamW with warm-up +
cosine (or one-cycle) -> validation metrics every epoch -> best/last checkpoints -> a
parity-checked bundle in the run folder.

Images are decoded and prepared once (``transforms.prepare``, the Predictor's own function)
and kept as uint8 in RAM up to ``cache_mb``; every epoch after the first costs no decoding.
Each epoch draws its order, augmentations and dropout from seeds derived from (seed, epoch),
and ``checkpoints/last.pt`` is written atomically after every epoch, so ``resume`` continues
after Ctrl-C or ``kill -9`` exactly as if nothing had happened.
"""

from __future__ import annotations

import csv
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from inspekt.bundle import ParityReport, save_bundle
from inspekt.card import DataInfo, InputSpec, ModelCard, library_versions, now_iso
from inspekt.config import TrainConfig, build_config, save_config
from inspekt.data import Dataset, open_dataset
from inspekt.data.split import split_dataset
from inspekt.drift.reference import write_reference
from inspekt.errors import ConfigError, DatasetError, InspektError
from inspekt.io import BatchReport, iter_images, load_image
from inspekt.runs import new_run_dir, train_staged
from inspekt.storage import is_remote
from inspekt.transforms import channel_stats, normalize, prepare

EpochCallback = Callable[[dict], None]
LAST, BEST, RESULTS, CONFIG = "checkpoints/last.pt", "checkpoints/best.safetensors", "results.csv", "config.yaml"
HIGHER_IS_BETTER = {
    "macro_f1": True,
    "accuracy": True,
    "balanced_accuracy": True,
    "roc_auc": True,
    "iou": True,
    "dice": True,
    "val_loss": False,
}


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    bundle: Path | None
    metrics: dict[str, float]
    parity: ParityReport | None
    skipped: BatchReport
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)


class ImageStore:
    """Prepared uint8 images of one split: cached in RAM within a byte budget, the rest decoded on use."""

    def __init__(self, items: list[np.ndarray | str], labels: np.ndarray, spec: InputSpec):
        self.items = items  # a prepared image, or the path to decode again when it did not fit
        self.labels = labels
        self.spec = spec

    @classmethod
    def build(
        cls, ds: Dataset, index: dict[str, int], spec: InputSpec, report: BatchReport, budget: list[int], split: str
    ) -> ImageStore:
        """Decode every image once (bad files are skipped and reported) and cache what fits in ``budget[0]``."""
        by_path = {str(s.path): s.label for s in ds.samples}
        items, labels = [], []
        for source, image in iter_images([s.path for s in ds.samples], mode="keep", report=report):
            prepared = prepare(image, spec)[0]
            if budget[0] >= prepared.nbytes:
                budget[0] -= prepared.nbytes
                items.append(prepared)
            else:
                items.append(source)
            labels.append(index[by_path[source]])
        if not items:
            raise DatasetError(f"{ds.root}: the {split} split has no readable images; add images or lower val=")
        return cls(items, np.asarray(labels, dtype=np.int64), spec)

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> np.ndarray:
        """The prepared uint8 image ``i``."""
        item = self.items[i]
        return item if isinstance(item, np.ndarray) else prepare(load_image(item, mode="keep"), self.spec)[0]

    def batch(self, indices: np.ndarray, augment=None) -> np.ndarray:
        """Normalised NCHW float32 batch, optionally augmented."""
        images = (self.image(int(i)) for i in indices)
        return np.stack([normalize(augment(im) if augment else im, self.spec) for im in images])

    def training_batch(self, indices: np.ndarray, augment, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Augmented inputs and their class indices."""
        return self.batch(indices, augment), self.labels[indices]

    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the prepared images."""
        return channel_stats(self.image, len(self), self.spec.channels)

    @property
    def uncached(self) -> int:
        """Images decoded again every epoch (they did not fit in the cache)."""
        return sum(isinstance(item, str) for item in self.items)


def _train_val(ds: Dataset, cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    """The dataset's own train/val splits, else a stratified, seeded split (``val`` fraction).
    A ``test`` split is never trained or validated on."""
    pool = replace(ds, samples=tuple(s for s in ds.samples if s.split != "test"))
    if "val" in pool.splits:
        return replace(pool, samples=tuple(s for s in pool.samples if s.split != "val")), pool.subset("val")
    carved = split_dataset(pool, val=cfg.val, test=0.0, seed=cfg.seed)
    return carved.subset("train"), carved.subset("val")


def input_channels(ds: Dataset, cfg: TrainConfig) -> int:
    """1 or 3: ``cfg.channels``, or 3 when any of the first 32 images is in colour."""
    if cfg.channels != "auto":
        return int(cfg.channels)
    for _, image in iter_images([s.path for s in ds.samples[:32]], mode="keep", report=BatchReport()):
        if image.ndim == 3:
            return 3
    return 1


def device_for(cfg: TrainConfig):
    """The torch device ``cfg.device`` names (auto: CUDA when available)."""
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda but torch sees no CUDA GPU; use device=cpu (or auto)")
    return torch.device("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")


def _schedule(optimizer, cfg: TrainConfig, steps_per_epoch: int):
    import torch

    total = cfg.epochs * steps_per_epoch
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total)
    warm = min(int(cfg.warmup_epochs * steps_per_epoch), total - 1)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / (warm + 1)
        progress = (step - warm) / max(1, total - warm)
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _score(row: dict, monitor: str) -> tuple[float, float]:
    """Sort key for 'better': the monitored metric, ties broken by the lower validation loss."""
    value = row.get("val_loss" if monitor == "val_loss" else f"val_{monitor}")
    if value is None:  # e.g. ROC-AUC undefined on a one-class validation split: fall back to the loss
        return -row["val_loss"], -row["val_loss"]
    return (value if HIGHER_IS_BETTER[monitor] else -value), -row["val_loss"]


class ClassifyTask:
    """What the loop needs to know about classification: stores, losses, validation, plots."""

    KEYS = ("accuracy", "balanced_accuracy", "macro_f1", "roc_auc")

    def __init__(self, cfg: TrainConfig, ds: Dataset):
        if len(ds.classes) < 2:
            raise DatasetError(f"{cfg.data}: classification needs at least 2 classes, found {list(ds.classes)}")
        if cfg.loss not in ("auto", "ce", "bce", "focal"):
            raise ConfigError(f"loss={cfg.loss} is a segmentation loss; classifiers use ce, bce or focal")
        if cfg.resize == "tile" or cfg.metric in ("iou", "dice"):
            raise ConfigError("resize=tile and metric iou/dice apply to segmentation; use task segment")
        self.cfg, self.classes, self.card_fields, self.notes = cfg, ds.classes, {}, []

    def resize(self, ds: Dataset) -> str:
        return "stretch" if self.cfg.resize == "auto" else self.cfg.resize

    def stores(
        self, train_ds: Dataset, val_ds: Dataset, spec: InputSpec, report: BatchReport, budget: list[int]
    ) -> tuple[ImageStore, ImageStore]:
        index = {c: i for i, c in enumerate(self.classes)}
        return (
            ImageStore.build(train_ds, index, spec, report, budget, "training"),
            ImageStore.build(val_ds, index, spec, report, budget, "validation"),
        )

    def monitor(self) -> str:
        if self.cfg.metric != "auto":
            return self.cfg.metric
        return "roc_auc" if len(self.classes) == 2 else "macro_f1"

    def losses(self, train: ImageStore):
        from inspekt.losses import class_weights, make_loss

        cfg, name = self.cfg, "ce" if self.cfg.loss == "auto" else self.cfg.loss
        weights = class_weights(np.bincount(train.labels, minlength=len(self.classes)), self.classes, cfg.class_weights)
        return (
            make_loss(name, weights, gamma=cfg.focal_gamma, label_smoothing=cfg.label_smoothing),
            make_loss(name, None, gamma=cfg.focal_gamma),
        )

    def validate(self, loop: _Loop, store: ImageStore) -> dict[str, Any]:
        """Classification metrics of the network on a split, with the mean loss."""
        import torch

        from inspekt.metrics import classification_metrics

        loop.network.eval()
        probs, losses = [], []
        with torch.inference_mode():
            for start in range(0, len(store), self.cfg.batch):
                idx = np.arange(start, min(start + self.cfg.batch, len(store)))
                logits = loop.network(torch.from_numpy(store.batch(idx)).to(loop.device)).float()
                targets = torch.from_numpy(store.labels[idx]).to(loop.device)
                losses.append(loop.val_loss(logits, targets).item() * len(idx))
                probs.append(torch.softmax(logits, 1).cpu().numpy())
        metrics = classification_metrics(store.labels, np.concatenate(probs), self.classes)
        return metrics | {"loss": float(np.sum(losses) / len(store))}

    def plots(self, run_dir: Path, final: dict) -> None:
        from inspekt.plots import plot_confusion

        plot_confusion(final["confusion"], self.classes, run_dir / "confusion.png")


def _task(cfg: TrainConfig, ds: Dataset):
    if cfg.task == "segment":
        from inspekt.seg_training import SegmentTask

        return SegmentTask(cfg, ds)
    if cfg.task == "classify":
        return ClassifyTask(cfg, ds)
    raise ConfigError(f"training {cfg.task} models is not available in this version; use task classify or segment")


class _Loop:
    """Network, optimiser, schedule and loss with their state; one object to checkpoint."""

    def __init__(self, network, cfg: TrainConfig, train, task):
        import torch

        from inspekt.augment import build_augmenter

        self.cfg, self.train_store, self.task = cfg, train, task
        self.device = device_for(cfg)
        self.network = network.to(self.device)
        self.optimizer = torch.optim.AdamW(network.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.batches_per_epoch = max(1, len(train) // cfg.batch)
        self.scheduler = _schedule(self.optimizer, cfg, self.batches_per_epoch)
        self.loss, self.val_loss = task.losses(train)
        self.augment = build_augmenter(cfg.augment, train.spec.size, flips=cfg.flips, seed=cfg.seed)
        self.amp = cfg.amp and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)

    def _seed(self, epoch: int) -> int:
        return (self.cfg.seed * 1_000_003 + epoch) % 2**31

    def train_epoch(self, epoch: int) -> float:
        import torch

        from inspekt.losses import epoch_order

        torch.manual_seed(self._seed(epoch))
        self.augment.reseed(self._seed(epoch))
        rng = np.random.default_rng([self.cfg.seed, epoch])
        order = epoch_order(self.train_store.labels, rng, balanced=self.cfg.sampler == "balanced")
        self.network.train()
        losses = []
        for idx in np.array_split(order, self.batches_per_epoch):
            x, y = self.train_store.training_batch(idx, self.augment, rng)
            inputs, targets = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
            with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
                loss = self.loss(self.network(inputs), targets)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            losses.append(loss.item())
        return float(np.mean(losses))

    def state(self) -> dict[str, Any]:
        return {
            "model": self.network.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])


def _epoch_row(
    epoch: int, train_loss: float, metrics: dict, lr: float, seconds: float, keys: tuple[str, ...]
) -> dict[str, Any]:
    row = {"epoch": epoch, "train_loss": round(train_loss, 6), "val_loss": round(metrics["loss"], 6)}
    for key in keys:
        if metrics.get(key) is not None:
            row[f"val_{key}"] = round(float(metrics[key]), 6)
    return row | {"lr": lr, "seconds": round(seconds, 3)}


def write_results(history: list[dict], path: Path) -> None:
    """Write the epoch rows as ``results.csv`` (atomically)."""
    fields = list(dict.fromkeys(k for row in history for k in row))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)


def _save_checkpoint(path: Path, payload: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a kill -9 leaves the previous checkpoint intact


def _load_checkpoint(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise ConfigError(f"{path.parent.parent}: no {LAST} to resume from (the run never finished an epoch)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only
    except Exception as exc:
        raise ConfigError(f"{path}: unreadable checkpoint ({type(exc).__name__}); start a new run") from exc


@dataclass
class _Prepared:
    cfg: TrainConfig
    ds: Dataset
    task: Any
    network: Any
    params: dict[str, Any]
    spec: InputSpec
    train: Any
    val: Any
    report: BatchReport
    notes: list[str]
    train_files: list[str]
    val_files: list[str]


def _prepare(cfg: TrainConfig) -> _Prepared:
    import torch

    from inspekt.models import create_model, get_entry

    if cfg.task not in ("classify", "segment"):
        raise ConfigError(f"training {cfg.task} models is not available in this version; use task classify or segment")
    get_entry(cfg.model, cfg.task)
    decided = sorted({"num_classes", "in_chans"} & set(cfg.model_params))
    if decided:
        raise ConfigError(f"model_params.{decided[0]} is set from the data (classes, channels=...); remove it")
    ds = open_dataset(cfg.data)
    task = _task(cfg, ds)
    torch.manual_seed(cfg.seed)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    train_ds, val_ds = _train_val(ds, cfg)
    channels, notes = input_channels(train_ds, cfg), list(task.notes)
    params = {"num_classes": len(task.classes), "in_chans": channels, **cfg.model_params}
    network = create_model(cfg.model, **params)  # bad parameters fail here, before any decoding
    if cfg.pretrained:
        from inspekt.models.pretrained import load_pretrained

        notes.append(load_pretrained(network, cfg.model, cfg.pretrained).summary())
    spec = InputSpec(
        size=(cfg.imgsz, cfg.imgsz),
        channels=channels,
        mean=(0.5,) * channels,
        std=(0.25,) * channels,
        resize=task.resize(train_ds),
        clahe=cfg.clahe,
        scale=cfg.scale,
        overlap=cfg.overlap,
    )
    report, budget = BatchReport(), [cfg.cache_mb * 2**20]
    train, val = task.stores(train_ds, val_ds, spec, report, budget)
    if len(train) < 2:
        raise DatasetError(f"{cfg.data}: only {len(train)} readable training image(s); add images")
    mean, std = train.stats()
    spec = spec.model_copy(update={"mean": mean, "std": std})
    train.spec = val.spec = spec
    uncached = train.uncached + val.uncached
    if uncached:
        notes.append(f"{uncached} images did not fit in cache_mb={cfg.cache_mb} and are decoded every epoch")
    return _Prepared(
        cfg,
        ds,
        task,
        network,
        params,
        spec,
        train,
        val,
        report,
        notes,
        [str(s.path) for s in train_ds.samples],
        [str(s.path) for s in val_ds.samples],
    )


def _run(p: _Prepared, run_dir: Path, on_epoch: EpochCallback | None, resume: dict | None = None) -> TrainResult:
    from safetensors.torch import save_file

    cfg = p.cfg
    loop = _Loop(p.network, cfg, p.train, p.task)
    monitor = p.task.monitor()
    history, best_key, best_state, stale, start = [], None, None, 0, 1
    if resume:
        loop.load_state(resume["loop"])
        history, stale, start = resume["history"], resume["stale"], resume["epoch"] + 1
        best_state, best_key = resume["best_model"], tuple(resume["best_key"])
    interrupted, finished = False, False
    try:
        for epoch in range(start, cfg.epochs + 1):
            t0 = time.perf_counter()
            lr = loop.optimizer.param_groups[0]["lr"]
            train_loss = loop.train_epoch(epoch)
            row = _epoch_row(epoch, train_loss, p.task.validate(loop, p.val), lr, time.perf_counter() - t0, p.task.KEYS)
            history.append(row)
            key = _score(row, monitor)
            if best_key is None or key > best_key:
                best_key, stale = key, 0
                best_state = {k: v.detach().cpu().clone() for k, v in loop.network.state_dict().items()}
                save_file({k: v.contiguous() for k, v in best_state.items()}, str(run_dir / BEST))
            else:
                stale += 1
            finished = stale >= cfg.patience or epoch == cfg.epochs
            _save_checkpoint(
                run_dir / LAST,
                {
                    "epoch": epoch,
                    "loop": loop.state(),
                    "history": history,
                    "stale": stale,
                    "best_key": list(best_key),
                    "best_model": best_state,
                    "fingerprint": p.ds.fingerprint(),
                    "finished": finished,
                },
            )
            write_results(history, run_dir / RESULTS)
            if on_epoch:
                on_epoch(row | {"epochs": cfg.epochs, "best": stale == 0})
            if finished:
                break
    except KeyboardInterrupt:
        interrupted = True
        if best_state is None:
            raise InspektError(f"interrupted before the first epoch finished; nothing to keep in {run_dir}") from None
    return _finish(p, run_dir, loop, best_state, history, interrupted)


def _finish(
    p: _Prepared, run_dir: Path, loop: _Loop, best_state: dict, history: list[dict], interrupted: bool
) -> TrainResult:
    from inspekt.plots import plot_history

    cfg, task = p.cfg, p.task
    loop.network.load_state_dict(best_state)
    final = task.validate(loop, p.val)
    network = loop.network.cpu().eval()
    plot_history(history, run_dir / "curves.png")
    task.plots(run_dir, final)
    best_epoch = max(history, key=lambda r: _score(r, task.monitor()))["epoch"]
    metrics = {f"val_{k}": round(float(final[k]), 4) for k in task.KEYS if final.get(k) is not None}
    metrics |= {"val_loss": round(final["loss"], 4), "best_epoch": float(best_epoch)}
    versions = library_versions()
    (run_dir / "versions.json").write_text(json.dumps(versions, indent=2) + "\n", encoding="utf-8")
    if p.report.skipped:
        (run_dir / "skipped.txt").write_text(p.report.summary() + "\n", encoding="utf-8")
    card = ModelCard(
        task=cfg.task,
        architecture=cfg.model,
        params=p.params,
        classes=task.classes,
        input=p.spec,
        data=DataInfo(fingerprint=p.ds.fingerprint(), source=str(cfg.data), n_samples=len(p.train)),
        metrics=metrics,
        versions=versions,
        created_at=now_iso(),
        **task.card_fields,
    )
    samples = p.val.batch(np.arange(min(8, len(p.val))))
    bundle, parity = save_bundle(network, card, run_dir / "bundle", samples=samples, overwrite=True)
    write_reference(bundle, p.train_files, p.val_files, seed=cfg.seed)
    return TrainResult(run_dir, bundle, metrics, parity, p.report, history, interrupted, p.notes)


def train(config: TrainConfig | None = None, *, on_epoch: EpochCallback | None = None, **options: Any) -> TrainResult:
    """Train a model (classify, segment or anomaly) and write its run folder and bundle.

    ``inspekt.train(data="parts/", model="resnet18", epochs=30)`` or ``train(TrainConfig(...))``;
    ``train(task="anomaly", data="mvtec/bottle", model="padim")`` fits on the normal images only.

    Args:
        config: a validated ``TrainConfig``; or give its keys as keyword ``options`` instead.
        on_epoch: called with each epoch's metrics row (progress display); anomaly methods send their
            own rows (epoch and loss, or feature-extraction steps).
        **options: config keys (task defaults to classify), validated like the CLI's.

    Returns:
        The run folder, bundle, best validation metrics, parity report and skipped files. When
        interrupted (Ctrl-C) after at least one epoch, the best model so far is still bundled
        and ``interrupted`` is True.

    Raises:
        ConfigError: invalid options, a task this version cannot train, or unusable weights.
        DatasetError: the dataset cannot be read or is unfit for the task.
    """
    cfg = config if config is not None else build_config(TrainConfig, options={"task": "classify", **options})
    if is_remote(cfg.out):  # checkpoints need real files: train in a local folder, upload it at the end
        return train_staged(cfg, train, on_epoch=on_epoch)
    if cfg.task == "anomaly":
        from inspekt.anomaly_training import DEFAULT_METHOD, train_anomaly

        if "model" not in cfg.model_fields_set:
            cfg = cfg.model_copy(update={"model": DEFAULT_METHOD})
        run_dir = new_run_dir(cfg.out, cfg.task, cfg.name, exist_ok=cfg.exist_ok)
        save_config(cfg, run_dir / CONFIG, exclude={"epochs", "lr", "batch"} - cfg.model_fields_set)  # method defaults
        return train_anomaly(cfg, run_dir, on_epoch)
    prepared = _prepare(cfg)
    run_dir = new_run_dir(cfg.out, cfg.task, cfg.name, exist_ok=cfg.exist_ok)
    (run_dir / LAST).parent.mkdir(exist_ok=True)
    save_config(cfg, run_dir / CONFIG)
    return _run(prepared, run_dir, on_epoch)


def resume(run_dir: str | Path, *, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Continue an interrupted run from its last completed epoch, exactly.

    Args:
        run_dir: the run folder (holding ``config.yaml`` and ``checkpoints/last.pt``).
        on_epoch: progress callback, as for ``train``.

    Raises:
        ConfigError: not a run folder, no checkpoint, a finished run, or changed data.
    """
    if is_remote(run_dir):
        raise ConfigError(
            f"{run_dir}: resuming a run stored at a URL is not supported; copy the folder to a local "
            "disk (e.g. aws s3 cp --recursive), resume it there, and upload it again"
        )
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no {CONFIG}); give the folder `inspekt train` printed")
    cfg = build_config(TrainConfig, options=yaml.safe_load((run_dir / CONFIG).read_text(encoding="utf-8")))
    if cfg.task == "anomaly":
        raise ConfigError(f"{run_dir}: anomaly runs fit in one go and cannot be resumed; train again")
    state = _load_checkpoint(run_dir / LAST)
    if state["finished"]:
        raise ConfigError(
            f"{run_dir}: the run already finished (epoch {state['epoch']}); its bundle is {run_dir / 'bundle'}"
        )
    prepared = _prepare(cfg)
    if prepared.ds.fingerprint() != state["fingerprint"]:
        raise ConfigError(
            f"{run_dir}: the data in {cfg.data} changed since the run started; resuming would not "
            "be exact. Start a new run"
        )
    return _run(prepared, run_dir, on_epoch, resume=state)
