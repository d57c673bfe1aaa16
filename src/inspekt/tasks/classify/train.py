"""Classification specifics of training: labelled images cached through the card's preprocessing,
class-weighted losses, validation metrics and the confusion plot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inspekt.card import InputSpec, Sanity
from inspekt.config import TrainConfig
from inspekt.data.dataset import Dataset
from inspekt.errors import ConfigError, DatasetError
from inspekt.io.decode import load_image
from inspekt.io.files import iter_images
from inspekt.progress import step
from inspekt.results import BatchReport
from inspekt.tasks.base import nothing_to_train
from inspekt.transforms import channel_stats, normalize, prepare


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
        with step(f"caching {split} images", len(ds.samples)) as advance:
            for source, image in iter_images([s.path for s in ds.samples], mode="keep", report=report):
                prepared = prepare(image, spec)[0]
                if budget[0] >= prepared.nbytes:
                    budget[0] -= prepared.nbytes
                    items.append(prepared)
                else:
                    items.append(source)
                labels.append(index[by_path[source]])
                advance()
        if not items:
            raise nothing_to_train(ds, split, report)
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


CHANCE_MARGIN = 0.05  # a balanced accuracy within this of chance (1 / classes) is a model that guesses


class ClassifyTraining:
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
        self.label_names = ds.classes  # what the sampler balances and the start summary counts

    remedy = (
        "It is saved but marked as failed (card.sanity) and is never picked as a default model. Try "
        "sampler=balanced or class_weights=auto, more epochs, another lr, or more images of the rare classes"
    )

    def sanity(self, final: dict) -> Sanity | None:
        """Whether the kept model does more than guess: it predicts more than one class on validation
        images of several classes, and its balanced accuracy is above chance (None: nothing to judge,
        e.g. a validation split of one class)."""
        confusion = np.asarray(final.get("confusion") or [], dtype=np.int64)
        if confusion.ndim != 2 or (confusion.sum(1) > 0).sum() < 2:
            return None
        present, predicted = int((confusion.sum(1) > 0).sum()), confusion.sum(0)
        problems = []
        if (predicted > 0).sum() == 1:
            problems.append(f"it predicts {self.classes[int(predicted.argmax())]!r} for every validation image")
        chance, score = 1 / present, float(final["balanced_accuracy"])
        if score <= chance + CHANCE_MARGIN:
            problems.append(f"its validation balanced accuracy {score:.3f} is at chance ({chance:.2f})")
        return Sanity(ok=not problems, why="; ".join(problems))

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
        from inspekt.tasks.classify.losses import make_loss
        from inspekt.tasks.shared import class_weights

        cfg, name = self.cfg, "ce" if self.cfg.loss == "auto" else self.cfg.loss
        weights = class_weights(np.bincount(train.labels, minlength=len(self.classes)), self.classes, cfg.class_weights)
        return (
            make_loss(name, weights, gamma=cfg.focal_gamma, label_smoothing=cfg.label_smoothing),
            make_loss(name, None, gamma=cfg.focal_gamma),
        )

    def validate(self, net: Any, store: ImageStore) -> dict[str, Any]:
        """Classification metrics of the network on a split, with the mean loss."""
        import torch

        from inspekt.tasks.classify.metrics import classification_metrics

        net.network.eval()
        probs, losses = [], []
        with torch.inference_mode():
            for start in range(0, len(store), self.cfg.batch):
                idx = np.arange(start, min(start + self.cfg.batch, len(store)))
                logits = net.network(torch.from_numpy(store.batch(idx)).to(net.device)).float()
                targets = torch.from_numpy(store.labels[idx]).to(net.device)
                losses.append(net.val_loss(logits, targets).item() * len(idx))
                probs.append(torch.softmax(logits, 1).cpu().numpy())
        loss = float(np.sum(losses) / len(store))
        if not np.isfinite(loss):  # outputs overflowed (a diverging run): no metrics; the loop stops the run
            return {"loss": loss}
        return classification_metrics(store.labels, np.concatenate(probs), self.classes) | {"loss": loss}

    def plots(self, run_dir: Path, final: dict) -> None:
        from inspekt.tasks.classify.plots import plot_confusion

        plot_confusion(final["confusion"], self.classes, run_dir / "confusion.png")
