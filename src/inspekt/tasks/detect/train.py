"""Detection specifics of the training loop: images with their boxes, CenterNet targets and losses,
validation mAP and the card's score threshold.

Images are prepared once through the card's preprocessing (``transforms.prepare``) and cached with
their boxes in prepared pixels. With ``resize=tile`` the model trains on windows of ``imgsz``
pixels: a share ``defect_crops`` of them contains a box's centre, the rest are uniform. Boxes move
with the image under augmentation (albumentations' bounding-box support).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from inspekt.augment import BOX_VISIBILITY
from inspekt.card import InputSpec, PostProcess, Sanity
from inspekt.config import TrainConfig
from inspekt.data import Dataset
from inspekt.errors import ConfigError, DatasetError
from inspekt.io import iter_images, load_image
from inspekt.progress import step
from inspekt.results import BatchReport, SkippedFile
from inspekt.tasks.base import nothing_to_train
from inspekt.tasks.detect.boxes import BoxRule, box_rule, clip_boxes
from inspekt.tasks.detect.metrics import at_threshold, best_f1_threshold, coco_map
from inspekt.tasks.detect.predict import STRIDE, Maps, decode, tiled_maps
from inspekt.tasks.supervised import auto_resize, require_multiple_of_32
from inspekt.tiling import pad_to_window
from inspekt.transforms import Geometry, channel_stats, normalize, prepare

SCORE_FLOOR = 0.02  # validation and evaluation keep boxes down to this score (for mAP)
DEFAULT_THRESHOLD = 0.3  # the score threshold when it is not calibrated
CHANCE_MARGIN = 0.05  # images with boxes flagged at most this much more often than images without: a guess
# resize=auto tiles images over 2x imgsz per side: small boxes keep their pixels (detect's own defaults were
# measured so on magnetic_tile, ~300 px images at imgsz 128); segmentation tiles from 3x
TILE_WHEN_LARGER = 2.0


class BoxStore:
    """Prepared images with their boxes (prepared pixels); cached within a byte budget."""

    def __init__(self, spec: InputSpec, rule: BoxRule, defect_crops: float):
        self.spec, self.rule, self.defect_crops = spec, rule, defect_crops
        self.items: list[tuple[np.ndarray, np.ndarray] | Any] = []
        self.labels = np.zeros(0, dtype=np.int64)  # 1 when the image has a box (sampler=balanced)
        self.counts = np.zeros(len(rule.classes), dtype=np.int64)

    @property
    def tiled(self) -> bool:
        return self.spec.resize == "tile"

    def _prepare(self, sample, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        boxes = self.rule.boxes(sample, image.shape[:2])
        prepared, g = prepare(image, self.spec)
        moved = boxes.copy()
        moved[:, [0, 2]] = boxes[:, [0, 2]] * g.scale_x + g.left
        moved[:, [1, 3]] = boxes[:, [1, 3]] * g.scale_y + g.top
        return prepared, clip_boxes(moved, prepared.shape[:2])

    @classmethod
    def build(
        cls,
        ds: Dataset,
        rule: BoxRule,
        spec: InputSpec,
        report: BatchReport,
        budget: list[int],
        split: str,
        crops: float,
    ):
        """Decode every image once; unreadable images and unusable masks are skipped and reported."""
        store, labels = cls(spec, rule, crops), []
        by_path = {str(s.path): s for s in ds.samples}
        with step(f"caching {split} images", len(ds.samples)) as advance:
            for source, image in iter_images([s.path for s in ds.samples], mode="keep", report=report):
                advance()
                try:
                    prepared, boxes = store._prepare(by_path[source], image)
                except DatasetError as exc:
                    report.loaded -= 1
                    report.skipped.append(SkippedFile(source, str(exc)))
                    continue
                store.counts += np.bincount(boxes[:, 4].astype(int), minlength=len(rule.classes))
                labels.append(int(len(boxes) > 0))
                fits = budget[0] >= prepared.nbytes
                budget[0] -= prepared.nbytes if fits else 0
                store.items.append((prepared, boxes) if fits else by_path[source])
        if not store.items:
            raise nothing_to_train(ds, split, report, "usable boxes")
        store.labels = np.asarray(labels, dtype=np.int64)
        return store

    def __len__(self) -> int:
        return len(self.items)

    def pair(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """The prepared image ``i`` and its boxes."""
        item = self.items[i]
        return item if isinstance(item, tuple) else self._prepare(item, load_image(item.path, mode="keep"))

    def _window(self, image: np.ndarray, boxes: np.ndarray, y0: int, x0: int) -> tuple[np.ndarray, np.ndarray]:
        """The window at (y0, x0) of the padded image, with the boxes that keep at least
        ``BOX_VISIBILITY`` of their area in it (clipped to it)."""
        wh, ww = self.spec.size
        window = pad_to_window(image, self.spec.size)[y0 : y0 + wh, x0 : x0 + ww]
        shifted = boxes - np.array([x0, y0, x0, y0, 0], dtype=np.float32)
        clipped = shifted.copy()
        clipped[:, [0, 2]] = clipped[:, [0, 2]].clip(0, ww)
        clipped[:, [1, 3]] = clipped[:, [1, 3]].clip(0, wh)
        visible = _area(clipped) / np.maximum(_area(shifted), 1e-6)
        return window, clipped[(visible >= BOX_VISIBILITY) & (_area(clipped) > 0)]

    def _crop(self, image: np.ndarray, boxes: np.ndarray, rng: np.random.Generator):
        (wh, ww), (h, w) = self.spec.size, pad_to_window(image, self.spec.size).shape[:2]
        if len(boxes) and rng.random() < self.defect_crops:
            x0, y0, x1, y1, _ = boxes[rng.integers(len(boxes))]
            cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
            top = int(np.clip(cy - rng.integers(wh // 8, wh - wh // 8), 0, h - wh))
            left = int(np.clip(cx - rng.integers(ww // 8, ww - ww // 8), 0, w - ww))
        else:
            top, left = int(rng.integers(0, h - wh + 1)), int(rng.integers(0, w - ww + 1))
        return self._window(image, boxes, top, left)

    def training_batch(self, indices: np.ndarray, augment, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Normalised inputs (windows when tiled), augmented with their boxes, and their targets."""
        inputs, targets = [], []
        for i in indices:
            image, boxes = self.pair(int(i))
            if self.tiled:
                image, boxes = self._crop(image, boxes, rng)
            if augment is not None:
                image, boxes = augment(image, boxes=boxes)
            inputs.append(normalize(image, self.spec))
            targets.append(encode_targets(boxes, self.spec.size, len(self.rule.classes)))
        return np.stack(inputs), np.stack(targets)

    def window_batch(self, indices) -> tuple[np.ndarray, np.ndarray]:
        """Inputs and targets without augmentation (the top-left window when tiled)."""
        pairs = [self._window(*self.pair(int(i)), 0, 0) for i in indices]
        targets = [encode_targets(b, self.spec.size, len(self.rule.classes)) for _, b in pairs]
        return np.stack([normalize(image, self.spec) for image, _ in pairs]), np.stack(targets)

    def batch(self, indices: np.ndarray) -> np.ndarray:
        """Normalised model inputs without augmentation (the top-left window when tiled)."""
        return self.window_batch(indices)[0]

    def stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        return channel_stats(lambda i: self.pair(i)[0], len(self), self.spec.channels)

    @property
    def uncached(self) -> int:
        return sum(not isinstance(item, tuple) for item in self.items)


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def encode_targets(boxes: np.ndarray, size: tuple[int, int], n_classes: int) -> np.ndarray:
    """CenterNet targets of one input, (classes + 5, H/4, W/4) float32: a Gaussian peak (1 at the
    centre cell) per box in its class's heat map, the distances (left, top, right, bottom) from each
    cell near a centre to its box's edges, and a weight map of the cells whose distances count.
    Smaller boxes are written last, so they win cells they share with larger ones."""
    h, w = size[0] // STRIDE, size[1] // STRIDE
    out = np.zeros((n_classes + 5, h, w), dtype=np.float32)
    gx, gy = np.meshgrid((np.arange(w) + 0.5) * STRIDE, (np.arange(h) + 0.5) * STRIDE)
    order = np.argsort(-_area(boxes), kind="stable")
    for x0, y0, x1, y1, c in boxes[order]:
        row, col = min(h - 1, int((y0 + y1) / 2 / STRIDE)), min(w - 1, int((x0 + x1) / 2 / STRIDE))
        sy, sx = max(0.5, (y1 - y0) / STRIDE / 6), max(0.5, (x1 - x0) / STRIDE / 6)
        gauss = np.exp(
            -((np.arange(h)[:, None] - row) ** 2) / (2 * sy**2) - (np.arange(w)[None] - col) ** 2 / (2 * sx**2)
        )
        out[int(c)] = np.maximum(out[int(c)], gauss)
        out[int(c), row, col] = 1.0
        near = (gauss >= 0.5) & (gx > x0) & (gx < x1) & (gy > y0) & (gy < y1)
        near[row, col] = True
        dist = np.stack([gx - x0, gy - y0, x1 - gx, y1 - gy])
        out[n_classes : n_classes + 4, near] = np.maximum(dist[:, near], 0.25)
        out[n_classes + 4, near] = 1.0
    return out


def detect_loss(outputs, targets, n_classes: int):
    """Penalty-reduced focal loss on the heat map (Law & Deng 2018, as CenterNet) plus, on the cells
    with a box, 1 - IoU of the predicted and true box and an L1 loss on the log distances."""
    import torch

    heat, dist = outputs
    truth, true_dist, weight = targets[:, :n_classes], targets[:, n_classes : n_classes + 4], targets[:, -1:]
    p = heat.float().clamp(1e-4, 1 - 1e-4)
    positive = truth.eq(1).float()
    focal = -(torch.log(p) * (1 - p) ** 2 * positive + torch.log(1 - p) * p**2 * (1 - truth) ** 4 * (1 - positive))
    focal = focal.sum() / positive.sum().clamp(min=1)
    cells = weight.sum().clamp(min=1)
    d, t = dist.float(), true_dist.clamp(min=0.25)
    inter = (torch.minimum(d[:, 0], t[:, 0]) + torch.minimum(d[:, 2], t[:, 2])) * (
        torch.minimum(d[:, 1], t[:, 1]) + torch.minimum(d[:, 3], t[:, 3])
    )
    union = (d[:, 0] + d[:, 2]) * (d[:, 1] + d[:, 3]) + (t[:, 0] + t[:, 2]) * (t[:, 1] + t[:, 3]) - inter
    iou = ((1 - inter / union.clamp(min=1e-6)) * weight[:, 0]).sum() / cells
    l1 = ((torch.log(d.clamp(min=1e-3)) - torch.log(t)).abs() * weight).sum() / cells / 4
    return focal + iou + 0.2 * l1


class DetectTraining:
    """What the loop needs to know about detection: stores, loss, validation, card fields."""

    KEYS = ("map50", "map50_95", "best_threshold", "box_f1", "escape_rate", "false_reject_rate")
    label_names = ("without boxes", "with boxes")  # images, as the sampler balances them
    augments_boxes = True
    remedy = "It is saved but marked as failed (card.sanity) and is never picked as a default model. Try more epochs"

    def __init__(self, cfg: TrainConfig, ds: Dataset):
        if cfg.loss != "auto":
            raise ConfigError(f"loss={cfg.loss}: detection has one loss (focal heat map + box IoU); remove loss=")
        if cfg.metric not in ("auto", "val_loss"):
            raise ConfigError(
                f"metric={cfg.metric}: detection keeps the epoch with the best mAP@0.5 (auto) or val_loss"
            )
        require_multiple_of_32(cfg.imgsz, "detection")
        self.cfg, self.ds = cfg, ds
        self.rule = box_rule(ds, cfg.masks, threshold=cfg.mask_threshold, values=cfg.mask_values)
        self.classes = self.rule.classes
        self.calibrate = cfg.threshold == "auto"  # the default (train_defaults), also in a run's config.yaml
        source = "their masks' connected regions" if self.rule.from_masks else "the box annotations"
        unannotated = sum(s.boxes is None for s in ds.samples) if not self.rule.from_masks else 0
        self.notes = [f"boxes from {source}"]
        if unannotated:
            self.notes.append(f"{unannotated} image(s) have no box annotation and count as images without objects")
        self.card_fields: dict[str, Any] = {}

    def sanity(self, final: dict) -> Sanity | None:
        return detection_sanity(final)

    def resize(self, ds: Dataset) -> str:
        return auto_resize(self.cfg, ds, TILE_WHEN_LARGER)

    def stores(self, train_ds: Dataset, val_ds: Dataset, spec: InputSpec, report: BatchReport, budget: list[int]):
        cfg = self.cfg
        train = BoxStore.build(train_ds, self.rule, spec, report, budget, "training", cfg.defect_crops)
        val = BoxStore.build(val_ds, self.rule, spec, report, budget, "validation", cfg.defect_crops)
        if not train.labels.any():
            raise DatasetError(
                f"{cfg.data}: no training image has a box; annotate objects (or give masks with defects)"
            )
        threshold = DEFAULT_THRESHOLD if self.calibrate else float(cfg.threshold)
        min_area = 0 if cfg.min_area == "auto" else int(cfg.min_area)
        self.card_fields = {
            "postprocess": PostProcess(threshold=threshold, min_area=min_area, kernel=0),
            "masks": self.rule.spec(),
            "outputs": ("heatmap", "boxes"),
        }
        return train, val

    def monitor(self) -> str:
        return "map50" if self.cfg.metric == "auto" else "val_loss"

    def losses(self, train: BoxStore):
        n = len(self.classes)
        return (lambda outputs, targets: detect_loss(outputs, targets, n)), None

    def validate(self, net, store: BoxStore) -> dict[str, Any]:
        """mAP on the validation images (boxes down to ``SCORE_FLOOR``, as in evaluation), the loss on
        their first windows, and the best-F1 score threshold (the card takes it when calibrating)."""
        import torch

        net.network.eval()
        truths, found, losses = [], [], []

        def run(batch: np.ndarray) -> dict[str, np.ndarray]:
            heat, dist = net.network(torch.from_numpy(batch).to(net.device))
            return {"heatmap": heat.float().cpu().numpy(), "boxes": dist.float().cpu().numpy()}

        with torch.inference_mode():
            for start in range(0, len(store), self.cfg.batch):
                idx = np.arange(start, min(start + self.cfg.batch, len(store)))
                x, y = store.window_batch(idx)
                outputs = net.network(torch.from_numpy(x).to(net.device))
                losses.append(
                    float(detect_loss(outputs, torch.from_numpy(y).to(net.device), len(self.classes))) * len(idx)
                )
                for i in idx:
                    image, boxes = store.pair(int(i))
                    truths.append(boxes)
                    found.append(decode(prepared_maps(image, store.spec, run, self.cfg.batch), SCORE_FLOOR))
        metrics = coco_map(truths, found, self.classes)
        best = best_f1_threshold(truths, found)
        if best is not None and self.calibrate:
            post = self.card_fields["postprocess"].model_copy(update={"threshold": round(best, 4)})
            self.card_fields["postprocess"] = post
        threshold = self.card_fields["postprocess"].threshold
        seen = at_threshold(truths, found, threshold)
        return {
            "map50": metrics["map50"],
            "map50_95": metrics["map50_95"],
            "best_threshold": best,
            "threshold": threshold,
            **{key: seen[key] for key in ("box_recall", "box_f1", "escape_rate", "false_reject_rate")},
            "loss": sum(losses) / len(store),
        }

    def plots(self, run_dir: Path, final: dict) -> None:
        """Nothing beyond the curves: ``inspekt eval`` draws PR curves and the FP/FN gallery."""


def detection_sanity(final: dict) -> Sanity | None:
    """Whether a detector does more than guess on its validation images (None: no box to find there).

    It fails when it finds none of the boxes (mAP@0.5 = 0), when at the card's score threshold it finds
    none, or when the images it flags are as often without boxes as with them (both kinds present):
    boxes everywhere, or boxes at random, and an mAP@0.5 above 0 by luck.
    """
    if final.get("map50") is None:
        return None
    problems = []
    if final["map50"] <= 0:
        problems.append("it finds none of the validation boxes (mAP@0.5 = 0)")
    elif not final.get("box_recall"):
        problems.append(f"at its score threshold {final['threshold']:.3g} it finds none of the validation boxes")
    escapes, false_rejects = final.get("escape_rate"), final.get("false_reject_rate")
    flags_any = escapes is not None and false_rejects is not None and (escapes < 1 or false_rejects > 0)
    if flags_any and 1 - escapes <= false_rejects + CHANCE_MARGIN:
        problems.append(
            f"it flags {false_rejects:.0%} of the validation images without boxes and {1 - escapes:.0%} of "
            "those with boxes: no better than chance"
        )
    return Sanity(ok=not problems, why="; ".join(problems))


def prepared_maps(prepared: np.ndarray, spec: InputSpec, run, batch_size: int) -> Maps:
    """The maps of an already prepared image (validation), with a geometry that keeps its pixels."""
    geometry = Geometry(prepared.shape[:2], 1.0, 1.0, 0, 0)
    if spec.resize == "tile":
        return Maps(*tiled_maps(prepared, spec, run, batch_size), geometry)
    out = run(normalize(prepared, spec)[None])
    return Maps(out["heatmap"][0], out["boxes"][0], geometry)
