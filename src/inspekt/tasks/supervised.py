"""What classification and segmentation training share: the train/validation split, the network
built from the registry, the RAM cache of prepared images, the objective the one loop runs
(``inspekt.models.loop``: AdamW with warm-up + cosine or one-cycle, validation every epoch, best
epoch kept) and the card of the result. Each task gives its hooks (stores, losses, validation,
plots): ``ClassifyTraining``, ``SegmentTraining``."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from inspekt import storage
from inspekt.card import DataInfo, InputSpec, ModelCard, library_versions, now_iso
from inspekt.config import TrainConfig
from inspekt.data.dataset import Dataset
from inspekt.data.split import split_dataset
from inspekt.errors import ConfigError, DatasetError, ImageLoadError
from inspekt.models.loop import Objective, epoch_seed
from inspekt.progress import say, step, warn
from inspekt.results import BatchReport
from inspekt.tasks.base import Fitted, device_for, input_channels

HIGHER_IS_BETTER = {
    "macro_f1": True,
    "accuracy": True,
    "balanced_accuracy": True,
    "roc_auc": True,
    "iou": True,
    "dice": True,
    "map50": True,
    "val_loss": False,
}


def require_multiple_of_32(imgsz: int, networks: str) -> None:
    """Refuse an input size that encoder-decoder networks (five stride-2 stages) cannot take.

    Raises:
        ConfigError: ``imgsz`` is not a multiple of 32 (the message suggests the nearest one).
    """
    if imgsz % 32:
        raise ConfigError(
            f"imgsz={imgsz}: {networks} networks need a multiple of 32 (e.g. {max(32, round(imgsz / 32) * 32)})"
        )


def auto_resize(cfg: TrainConfig, ds: Dataset, larger: float) -> str:
    """The resize policy of a task that can tile (segment, detect): ``cfg.resize``, or for auto: tile
    when the images (times ``cfg.scale``) average over ``larger`` times imgsz per side."""
    if cfg.resize != "auto":
        return cfg.resize
    from inspekt.io import image_size

    sizes = []
    for sample in ds.samples[:: max(1, len(ds.samples) // 64)]:
        try:
            sizes.append(image_size(sample.path))
        except (ImageLoadError, OSError):  # unreadable files are reported when the store is built
            continue
    if not sizes:
        return "stretch"
    side = float(np.sqrt(np.median([w * h for w, h in sizes]))) * cfg.scale
    return "tile" if side > larger * cfg.imgsz else "stretch"


def _train_val(ds: Dataset, cfg: TrainConfig) -> tuple[Dataset, Dataset]:
    """The dataset's own train/val splits, else a stratified, seeded split (``val`` fraction).
    A ``test`` split is never trained or validated on."""
    pool = replace(ds, samples=tuple(s for s in ds.samples if s.split != "test"))
    if "val" in pool.splits:
        return replace(pool, samples=tuple(s for s in pool.samples if s.split != "val")), pool.subset("val")
    carved = split_dataset(pool, val=cfg.val, test=0.0, seed=cfg.seed)
    return carved.subset("train"), carved.subset("val")


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


@dataclass
class Net:
    """The network under training as the task hooks' ``validate`` sees it."""

    network: Any
    device: Any
    val_loss: Any


class Supervised:
    """One classification or segmentation run: ``Supervised(cfg, ds, hooks).fit(hooks, run_dir)`` -> ``Fitted``.

    The constructor reads and caches the data and builds the network and the augmentation (bad parameters
    fail before any decoding); ``fit`` runs the one loop and describes the result as a card.
    """

    def __init__(self, cfg: TrainConfig, ds: Dataset, hooks: Any):
        import torch

        from inspekt.augment import build_augmenter
        from inspekt.models import create_model, get_entry

        get_entry(cfg.model, cfg.task)
        decided = sorted({"num_classes", "in_chans"} & set(cfg.model_params))
        if decided:
            raise ConfigError(f"model_params.{decided[0]} is set from the data (classes, channels=...); remove it")
        self.cfg, self.ds, self.hooks = cfg, ds, hooks
        torch.manual_seed(cfg.seed)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.benchmark = False
        train_ds, val_ds = _train_val(ds, cfg)
        channels, self.notes = input_channels(train_ds, cfg), list(hooks.notes)
        self.params = {"num_classes": len(hooks.classes), "in_chans": channels, **cfg.model_params}
        self.network = create_model(cfg.model, **self.params)
        if cfg.pretrained:
            from inspekt.models.pretrained import load_pretrained

            self.notes.append(load_pretrained(self.network, cfg.model, cfg.pretrained).summary())
        boxes = getattr(hooks, "augments_boxes", False)  # the task's targets are boxes the image moves
        self.augment = build_augmenter(cfg.augment, (cfg.imgsz, cfg.imgsz), flips=cfg.flips, seed=cfg.seed, boxes=boxes)
        spec = InputSpec(
            size=(cfg.imgsz, cfg.imgsz),
            channels=channels,
            mean=(0.5,) * channels,
            std=(0.25,) * channels,
            resize=hooks.resize(train_ds),
            clahe=cfg.clahe,
            scale=cfg.scale,
            overlap=cfg.overlap,
        )
        self.report, budget = BatchReport(), [cfg.cache_mb * 2**20]
        self.train, self.val = hooks.stores(train_ds, val_ds, spec, self.report, budget)
        if len(self.train) < 2:
            raise DatasetError(f"{cfg.data}: only {len(self.train)} readable training image(s); add images")
        mean, std = self.train.stats()
        self.spec = spec.model_copy(update={"mean": mean, "std": std})
        self.train.spec = self.val.spec = self.spec
        uncached = self.train.uncached + self.val.uncached
        if uncached:
            self.notes.append(f"{uncached} images did not fit in cache_mb={cfg.cache_mb} and are decoded every epoch")
        self.train_files = [str(s.path) for s in train_ds.samples]
        self.val_files = [str(s.path) for s in val_ds.samples]
        self.sampler = self._start_summary(channels)

    def _start_summary(self, channels: int) -> str:
        """Say what is trained on what (images per split and class, imbalance, model, input, device and
        the automatic choices); returns the sampler, chosen here when ``sampler=auto``."""
        import torch

        cfg, names = self.cfg, self.hooks.label_names
        ratio = imbalance(self.train.labels, len(names))
        sampler = choose_sampler(cfg, ratio)
        say(
            f"data {cfg.data}: training {len(self.train)} images ({_per_class(self.train.labels, names)}), "
            f"validation {len(self.val)} ({_per_class(self.val.labels, names)}); imbalance {ratio:.1f}:1"
        )
        params = "".join(f" {k}={v}" for k, v in self.cfg.model_params.items())
        device = device_for(cfg)
        threads = f", {torch.get_num_threads()} thread(s)" if device.type == "cpu" else ""
        say(
            f"model: {cfg.model}{params}, input {cfg.imgsz}x{cfg.imgsz}x{channels}, resize {self.spec.resize}, "
            f"{cfg.epochs} epochs of {max(1, len(self.train) // cfg.batch)} batches, device {device}{threads}"
        )
        auto = [f"channels {channels}"] if cfg.channels == "auto" else []
        auto += [f"resize {self.spec.resize}"] if cfg.resize == "auto" else []
        if cfg.sampler == "auto":
            why = f"classes {ratio:.0f}:1 imbalanced; sampler=shuffle turns it off" if sampler == "balanced" else ""
            auto.append(f"sampler {sampler}" + (f" ({why})" if why else ""))
        if auto:
            say("automatic: " + ", ".join(auto))
        return sampler

    def objective(self) -> tuple[Objective, Net]:
        """What the loop optimises: AdamW over shuffled (or class-balanced), augmented batches."""
        import torch

        cfg, train, augment = self.cfg, self.train, self.augment
        net = Net(self.network, device_for(cfg), None)
        loss, net.val_loss = self.hooks.losses(train)
        steps = max(1, len(train) // cfg.batch)

        def batches(epoch: int, rng: np.random.Generator):
            augment.reseed(epoch_seed(cfg.seed, epoch))
            order = epoch_order(train.labels, rng, balanced=self.sampler == "balanced")
            for idx in np.array_split(order, steps):
                x, y = train.training_batch(idx, augment, rng)
                yield torch.from_numpy(x).to(net.device), torch.from_numpy(y).to(net.device)

        monitor = self.hooks.monitor()
        objective = Objective(
            network=self.network,
            batches=batches,
            loss=lambda batch: loss(self.network(batch[0]), batch[1]),
            epochs=cfg.epochs,
            optimizer=lambda params: torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay),
            schedule=lambda optimizer, total: _schedule(optimizer, cfg, steps),
            steps_per_epoch=steps,
            validate=lambda: self.hooks.validate(net, self.val),
            keys=self.hooks.KEYS,
            monitor="val_loss" if monitor == "val_loss" else f"val_{monitor}",
            higher_is_better=HIGHER_IS_BETTER[monitor],
            patience=cfg.patience,
            seed=cfg.seed,
            device=net.device,
            amp=cfg.amp,
        )
        return objective, net

    def fit(self, hooks: Any, run_dir: Path) -> Fitted:
        """Run the one loop (``hooks.loop``), validate the kept weights once more and describe them as a card."""
        objective, net = self.objective()
        result = hooks.loop(objective)
        with step("validating the kept weights"):
            final = self.hooks.validate(net, self.val)
        network = self.network.cpu().eval()
        self.hooks.plots(run_dir, final)
        sanity, notes = self.hooks.sanity(final), ()
        if sanity is not None and not sanity.ok:
            notes = (f"{FAILED}: {sanity.why}. {self.hooks.remedy}",)
            warn(notes[0])
            self.notes.extend(notes)
        metrics = {f"val_{k}": round(float(final[k]), 4) for k in self.hooks.KEYS if final.get(k) is not None}
        metrics |= {"val_loss": round(final["loss"], 4), "best_epoch": float(result.best_epoch)}
        card = ModelCard(
            task=self.cfg.task,
            architecture=self.cfg.model,
            params=self.params,
            classes=self.hooks.classes,
            input=self.spec,
            data=DataInfo(
                fingerprint=self.ds.fingerprint(), source=storage.source_text(self.cfg.data), n_samples=len(self.train)
            ),
            metrics=metrics,
            versions=library_versions(),
            created_at=now_iso(),
            sanity=sanity,
            notes=notes,
            **self.hooks.card_fields,
        )
        samples = self.val.batch(np.arange(min(8, len(self.val))))
        return Fitted(network, card, samples, self.train_files, self.val_files, self.report, self.notes)


BALANCE_ABOVE = 10.0  # sampler=auto oversamples rare classes above this imbalance (largest / smallest class)
FAILED = "training failed its sanity check"


def imbalance(labels: np.ndarray, n: int) -> float:
    """The largest class's training images over the smallest's (classes without images left out)."""
    counts = np.bincount(labels, minlength=n)
    present = counts[counts > 0]
    return float(present.max() / present.min()) if len(present) > 1 else 1.0


def choose_sampler(cfg: TrainConfig, ratio: float) -> str:
    """``cfg.sampler``, or for ``auto``: balanced above ``BALANCE_ABOVE``:1, unless class weights
    already correct the imbalance (one correction, not two)."""
    if cfg.sampler != "auto":
        return cfg.sampler
    return "balanced" if ratio > BALANCE_ABOVE and cfg.class_weights == "none" else "shuffle"


def _per_class(labels: np.ndarray, names: tuple[str, ...]) -> str:
    return ", ".join(f"{name} {n}" for name, n in zip(names, np.bincount(labels, minlength=len(names))))


def epoch_order(labels: np.ndarray, rng: np.random.Generator, *, balanced: bool) -> np.ndarray:
    """Sample indices for one epoch: a permutation, or (``balanced``) a draw with replacement in
    which every class is equally likely, so rare classes are oversampled.

    Args:
        labels: integer training labels.
        rng: the epoch's generator (seeded per epoch for exact resume).
        balanced: oversample rare classes.

    Returns:
        ``len(labels)`` indices.
    """
    if not balanced:
        return rng.permutation(len(labels))
    counts = np.bincount(labels)
    p = 1.0 / counts[labels]
    return rng.choice(len(labels), size=len(labels), replace=True, p=p / p.sum())
