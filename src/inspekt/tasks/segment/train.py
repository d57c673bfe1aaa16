"""Segmentation specifics of the training loop: image + mask pairs, defect-biased crops, losses,
validation IoU and the card's post-processing.

Images and their class maps are prepared once through the card's preprocessing (the Predictor's
own ``transforms.prepare``; masks with nearest-neighbour sampling) and cached in RAM within
``cache_mb``. With ``resize=tile`` the model trains on random windows of ``imgsz`` pixels of the
scaled image: a share ``defect_crops`` of them is centred (with jitter) on a defect pixel, the
rest are uniform, so small defects are seen often and negatives are not forgotten. Validation
runs the same tiled inference as the Predictor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspekt.card import InputSpec, PostProcess, Sanity
from inspekt.config import TrainConfig
from inspekt.data import Dataset
from inspekt.data.masks import MaskRule, mask_rule
from inspekt.errors import ConfigError, DatasetError
from inspekt.io import iter_images, load_image
from inspekt.progress import step
from inspekt.results import BatchReport, SkippedFile
from inspekt.tasks.base import nothing_to_train
from inspekt.tasks.segment.metrics import SegmentationTally
from inspekt.tasks.segment.predict import postprocess, softmax_maps, tiled_probabilities
from inspekt.tasks.supervised import auto_resize, require_multiple_of_32
from inspekt.tiling import pad_to_window
from inspekt.transforms import channel_stats, normalize, prepare, resize

MAX_COORDS = 512  # defect pixels remembered per image for centring crops


class MaskStore:
    """Prepared images with their class maps; cached within a byte budget, the rest decoded on use."""

    def __init__(self, spec: InputSpec, rule: MaskRule, defect_crops: float):
        self.spec, self.rule, self.defect_crops = spec, rule, defect_crops
        self.items: list[tuple[np.ndarray, np.ndarray] | Any] = []
        self.coords: list[np.ndarray] = []
        self.labels = np.zeros(0, dtype=np.int64)  # 1 when the image has a defect (for sampler=balanced)
        self.pixels = np.zeros(len(rule.classes), dtype=np.int64)
        self.areas: list[int] = []  # defect region sizes at the original resolution

    @property
    def tiled(self) -> bool:
        return self.spec.resize == "tile"

    def _prepare(self, sample, image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        target = self.rule.target(sample, image.shape[:2])
        prepared, _ = prepare(image, self.spec)
        prepared_target, _ = resize(target, self.spec, mask=True)
        return prepared, prepared_target, target

    @classmethod
    def build(
        cls,
        ds: Dataset,
        rule: MaskRule,
        spec: InputSpec,
        report: BatchReport,
        budget: list[int],
        split: str,
        defect_crops: float,
    ) -> MaskStore:
        """Decode every image and mask once; unreadable files and bad masks are skipped and reported."""
        store = cls(spec, rule, defect_crops)
        by_path = {str(s.path): s for s in ds.samples}
        labels = []
        with step(f"caching {split} images", len(ds.samples)) as advance:
            for source, image in iter_images([s.path for s in ds.samples], mode="keep", report=report):
                advance()
                try:
                    prepared, target, original = store._prepare(by_path[source], image)
                except DatasetError as exc:
                    report.loaded -= 1
                    report.skipped.append(SkippedFile(source, str(exc)))
                    continue
                store.areas.extend(_region_areas(original))
                store.pixels += np.bincount(target.ravel(), minlength=len(rule.classes))[: len(rule.classes)]
                found = np.argwhere(target > 0)
                stride = max(1, len(found) // MAX_COORDS)
                store.coords.append(found[::stride].astype(np.int32))
                labels.append(int(len(found) > 0))
                size = prepared.nbytes + target.nbytes
                if budget[0] >= size:
                    budget[0] -= size
                    store.items.append((prepared, target))
                else:
                    store.items.append(by_path[source])
        if not store.items:
            raise nothing_to_train(ds, split, report, "a usable mask")
        store.labels = np.asarray(labels, dtype=np.int64)
        return store

    def __len__(self) -> int:
        return len(self.items)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The prepared image and class map ``i``."""
        item = self.items[i]
        if isinstance(item, tuple):
            return item
        prepared, target, _ = self._prepare(item, load_image(item.path, mode="keep"))
        return prepared, target

    def _crop(self, i: int, image: np.ndarray, target: np.ndarray, rng: np.random.Generator):
        wh, ww = self.spec.size
        image, target = pad_to_window(image, self.spec.size), pad_to_window(target, self.spec.size)
        h, w = target.shape
        coords = self.coords[i]
        if len(coords) and rng.random() < self.defect_crops:
            cy, cx = coords[rng.integers(len(coords))]
            y0 = int(np.clip(cy - rng.integers(wh // 8, wh - wh // 8), 0, h - wh))
            x0 = int(np.clip(cx - rng.integers(ww // 8, ww - ww // 8), 0, w - ww))
        else:
            y0, x0 = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
        return image[y0 : y0 + wh, x0 : x0 + ww], target[y0 : y0 + wh, x0 : x0 + ww]

    def training_batch(self, indices: np.ndarray, augment, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Normalised inputs (crops when tiled) and their class maps, augmented together."""
        inputs, targets = [], []
        for i in indices:
            image, target = self.pair(int(i))
            if self.tiled:
                image, target = self._crop(int(i), image, target, rng)
            if augment is not None:
                image, target = augment(image, target)
            inputs.append(normalize(image, self.spec))
            targets.append(target)
        return np.stack(inputs), np.stack(targets).astype(np.int64)

    def batch(self, indices: np.ndarray) -> np.ndarray:
        """Normalised model inputs without augmentation (the top-left window when tiled)."""
        wh, ww = self.spec.size
        images = (pad_to_window(self.pair(int(i))[0], self.spec.size)[:wh, :ww] for i in indices)
        return np.stack([normalize(image, self.spec) for image in images])

    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the prepared images."""
        return channel_stats(lambda i: self.pair(i)[0], len(self), self.spec.channels)

    @property
    def uncached(self) -> int:
        """Images decoded again every epoch (they did not fit in the cache)."""
        return sum(not isinstance(item, tuple) for item in self.items)


def _region_areas(target: np.ndarray) -> list[int]:
    if not target.any():
        return []
    n, _, stats, _ = cv2.connectedComponentsWithStats((target > 0).astype(np.uint8), connectivity=8)
    return stats[1:n, cv2.CC_STAT_AREA].tolist()


# resize=auto tiles only images over 3x imgsz per side: on magnetic_tile (~300 px, imgsz 128) whole images
# squeezed to 128 px reached a validation IoU of 0.078 at epoch 22, 128-px windows at full scale 0.047 at twice
# the cost per epoch (benchmarks/segment_magnetic_tile.py --defaults, 1 core)
TILE_WHEN_LARGER = 3.0


def auto_min_area(areas: list[int]) -> int:
    """Regions smaller than half the 2nd-percentile training defect are noise (at least 1 pixel)."""
    if not areas:
        return 0
    return max(1, int(0.5 * np.percentile(areas, 2)))


class SegmentTraining:
    """What the loop needs to know about segmentation: stores, losses, validation, card fields."""

    KEYS = (
        "iou",
        "dice",
        "defect_iou",
        "pixel_precision",
        "pixel_recall",
        "image_auroc",
        "best_threshold",
        "best_threshold_iou",
    )

    def __init__(self, cfg: TrainConfig, ds: Dataset):
        if cfg.loss not in ("auto", "dice_bce", "focal", "tversky"):
            raise ConfigError(f"loss={cfg.loss} is a classification loss; segmentation uses dice_bce, focal or tversky")
        if cfg.metric not in ("auto", "iou", "dice", "val_loss"):
            raise ConfigError(
                f"metric={cfg.metric} is a classification metric; segmentation uses iou, dice or val_loss"
            )
        require_multiple_of_32(cfg.imgsz, "segmentation")
        self.cfg, self.ds = cfg, ds
        self.rule = mask_rule(ds, cfg.masks, threshold=cfg.mask_threshold, values=cfg.mask_values)
        self.classes = self.rule.classes
        missing = sum(s.mask is None for s in ds.samples)
        self.notes = [f"{missing} image(s) have no mask file and count as defect-free"] if missing else []
        self.card_fields: dict[str, Any] = {}

    label_names = ("defect-free", "with defects")  # images, as the sampler balances them
    remedy = (
        "It is saved but marked as failed (card.sanity) and is never picked as a default model. Try "
        "sampler=balanced, class_weights=auto, more epochs or threshold=auto"
    )

    def sanity(self, final: dict) -> Sanity | None:
        """Whether the kept model finds any defect pixel on validation images that have some, at the
        card's threshold (threshold=auto: at the calibrated one), without marking nearly every pixel as
        defect (recall 0.9 or more at a precision under 0.05, at 0.5 or a card threshold at or below it);
        None when there is no defect to find."""
        if not final.get("n_defective"):
            return None
        key = "best_threshold_iou" if self.cfg.threshold == "auto" else "pixel_recall"
        if not float(final.get(key) or 0.0) > 0:
            return Sanity(ok=False, why="it finds no defect pixel in the validation images")
        recall, precision = float(final.get("pixel_recall") or 0.0), float(final.get("pixel_precision") or 0.0)
        at_most_half = self.cfg.threshold != "auto" or float(final.get("best_threshold") or 0.5) <= 0.5
        if at_most_half and recall >= 0.9 and precision < 0.05:
            return Sanity(
                ok=False,
                why=f"it marks nearly every pixel as defect (validation pixel recall {recall:.2f} at precision "
                f"{precision:.3f})",
            )
        return Sanity(ok=True, why="")

    def resize(self, ds: Dataset) -> str:
        """The resize policy; auto tiles when images average over ``TILE_WHEN_LARGER`` times imgsz per side."""
        return auto_resize(self.cfg, ds, TILE_WHEN_LARGER)

    def stores(
        self, train_ds: Dataset, val_ds: Dataset, spec: InputSpec, report: BatchReport, budget: list[int]
    ) -> tuple[MaskStore, MaskStore]:
        cfg = self.cfg
        train = MaskStore.build(train_ds, self.rule, spec, report, budget, "training", cfg.defect_crops)
        val = MaskStore.build(val_ds, self.rule, spec, report, budget, "validation", cfg.defect_crops)
        if not train.labels.any():
            raise DatasetError(
                f"{cfg.data}: no training mask has a defect pixel (mask_threshold={cfg.mask_threshold}). "
                "Check the masks or lower mask_threshold; if the defect images are all in a test "
                "split (MVTec), re-split: inspekt data split DATA --out split.csv, then train on split.csv"
            )
        min_area = auto_min_area(train.areas) if cfg.min_area == "auto" else int(cfg.min_area)
        self.card_fields = {
            "postprocess": PostProcess(threshold=self.threshold, min_area=min_area, kernel=cfg.kernel),
            "masks": self.rule.spec(),
        }
        return train, val

    @property
    def threshold(self) -> float:
        """The threshold validation applies (``threshold=auto`` starts from 0.5)."""
        return 0.5 if self.cfg.threshold == "auto" else self.cfg.threshold

    def monitor(self) -> str:
        return "iou" if self.cfg.metric == "auto" else self.cfg.metric

    def losses(self, train: MaskStore):
        from inspekt.tasks.segment.losses import make_segment_loss
        from inspekt.tasks.shared import class_weights

        cfg, name = self.cfg, "dice_bce" if self.cfg.loss == "auto" else self.cfg.loss
        weights = class_weights(train.pixels, self.classes, cfg.class_weights, power=0.5)
        loss = make_segment_loss(name, weights, gamma=cfg.focal_gamma, beta=cfg.tversky_beta)
        return loss, None

    def validate(self, net, store: MaskStore) -> dict[str, Any]:
        """Validation IoU / Dice at the card's threshold without clean-up (the network's own quality),
        image AUROC, the threshold with the best defect IoU, and the mean per-pixel cross-entropy as
        the loss. With ``threshold=auto`` the card takes that best threshold; the last validation
        runs on the best weights, so the card keeps theirs."""
        import torch

        net.network.eval()
        device, post = net.device, PostProcess(threshold=self.threshold, min_area=0, kernel=0)
        tally, nll, pixels = SegmentationTally(len(self.classes)), 0.0, 0

        def run(batch: np.ndarray) -> np.ndarray:
            return net.network(torch.from_numpy(batch).to(device)).float().cpu().numpy()

        with torch.inference_mode():
            for start in range(0, len(store), self.cfg.batch):
                idx = range(start, min(start + self.cfg.batch, len(store)))
                pairs = [store.pair(i) for i in idx]
                if store.tiled:
                    maps = [tiled_probabilities(image, store.spec, run, self.cfg.batch) for image, _ in pairs]
                else:
                    maps = list(softmax_maps(run(np.stack([normalize(image, store.spec) for image, _ in pairs]))))
                for probs, (_, target) in zip(maps, pairs):
                    mask, defect = postprocess(probs, post)
                    tally.add(target, mask, float(defect.max()), bool(mask.any()), defect)
                    picked = np.take_along_axis(probs, target[None].astype(np.int64), axis=0)
                    nll -= float(np.log(np.maximum(picked, 1e-7)).sum())
                    pixels += target.size
        best_threshold, best_iou = tally.best_threshold() or (None, None)
        if best_threshold is not None and self.cfg.threshold == "auto":
            calibrated = self.card_fields["postprocess"].model_copy(update={"threshold": best_threshold})
            self.card_fields["postprocess"] = calibrated
        return tally.metrics(self.classes) | {
            "loss": nll / max(1, pixels),
            "best_threshold": best_threshold,
            "best_threshold_iou": best_iou,
        }

    def plots(self, run_dir: Path, final: dict) -> None:
        """Nothing beyond the curves: ``inspekt eval`` draws overlays at the original size."""
