"""Template matching for parts that come in a few known variants (poses, faces, sides): a
"variation model".

A small CNN recognises which variant an image shows; each variant has a template, the per-pixel
mean of its normal training images, and a per-pixel spread, the standard deviation of those images
around it. The anomaly map is the ratio of the input's distance to its template over the normal
spread there, ``|x - template| / (spread + min_std)`` (both lightly blurred), and the image score
its maximum (or top-k mean): places where normal parts vary (glare, edges that move by a pixel)
tolerate large differences, places where they never vary do not.

The classic rule for this setting, ``1 - SSIM(input, template) / SSIM(input, autoencoder
reconstruction)``, was measured on the dice poses and ranked anomalies below normal images
(image AUROC 0.39), so it is not offered.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from inspekt.models.anomaly.ae_ssim import unit_batch
from inspekt.models.anomaly.base import (
    AnomalyNet,
    FitData,
    FitSettings,
    check_common,
    gaussian_kernel,
    smooth,
    top_k_mean,
)
from inspekt.models.anomaly.ssim import to_unit
from inspekt.models.loop import Objective
from inspekt.models.registry import register_model

CLASSIFIER_SIZE = 32  # variants differ in their layout, which 32 x 32 pixels show; this keeps the CNN cheap
CLUSTER_SIZE = 16  # side of the thumbnails k-means groups images by when no variants are given
CLASSIFIER_PRESENTATIONS = 20_000  # default classifier training length, in images shown
STATS_BATCH = 256  # images per step when accumulating the templates: bounds memory on large datasets
DEFAULT_BATCH = 32
DEFAULT_LR = 1e-3


class VariantClassifier(nn.Module):
    """Three conv blocks on a 32 x 32 average-pooled copy of the input, then a linear layer: variant logits.

    Args:
        in_chans: image channels.
        input_size: square input side (a multiple of 32).
        variants: number of variants.
        width: channels of the first block (doubled, then quadrupled).
    """

    def __init__(self, *, in_chans: int, input_size: int, variants: int, width: int):
        super().__init__()
        self.pool = input_size // CLASSIFIER_SIZE
        blocks = []
        for c_in, c_out in zip([in_chans, width, 2 * width], [width, 2 * width, 4 * width]):
            blocks += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]
        self.features = nn.Sequential(*blocks)
        self.head = nn.Linear(4 * width, variants)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        small = nn.functional.avg_pool2d(x, self.pool) if self.pool > 1 else x
        return self.head(self.features(small).mean(dim=(2, 3)))


def cluster_variants(data: FitData, max_variants: int, seed: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """Group unlabelled images into variants: k-means on thumbnails, k chosen by silhouette.

    Args:
        data: the training images.
        max_variants: the largest k tried (k runs from 2).
        seed: k-means seed.

    Returns:
        The (N,) variant index of each image (all 0 with fewer than 3 images), and the variant names.
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    thumbs = np.concatenate(
        [  # in chunks: never the whole dataset as float32 at once
            nn.functional.adaptive_avg_pool2d(
                unit_batch(data, np.arange(start, min(start + STATS_BATCH, len(data)))), CLUSTER_SIZE
            )
            .flatten(1)
            .numpy()
            for start in range(0, len(data), STATS_BATCH)
        ]
    )
    best_labels, best_silhouette = np.zeros(len(data), dtype=np.int64), -np.inf
    for k in range(2, min(max_variants, len(data) - 1) + 1):
        labels = KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(thumbs)
        silhouette = silhouette_score(thumbs, labels, sample_size=min(len(data), 2000), random_state=seed)
        if silhouette > best_silhouette:
            best_labels, best_silhouette = labels, silhouette
    count = int(best_labels.max()) + 1
    return best_labels, tuple(f"cluster_{i}" for i in range(count))


def blur(images: torch.Tensor, kernel: torch.Tensor | None) -> torch.Tensor:
    """Gaussian blur of (N, C, H, W) images with a (C, 1, k, k) kernel; None = unchanged."""
    return images if kernel is None else smooth(images, kernel)


def variant_statistics(
    data: FitData, groups: np.ndarray, count: int, kernel: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-variant per-pixel mean of the images, and standard deviation of their blurred copies.

    Args:
        data: the training images.
        groups: (N,) variant index of each image.
        count: number of variants K (a variant without images gets the statistics of all images).
        kernel: the (C, 1, k, k) Gaussian the spread is measured after (None = no blur).

    Returns:
        (K, C, H, W) templates in [0, 1] and (K, C, H, W) spreads.
    """
    templates, spreads = [], []
    for variant in range(count):
        members = np.flatnonzero(groups == variant)
        members = members if len(members) else np.arange(len(data))
        total = total_squares = 0.0
        # float64 sums over chunks: exact enough for E[b^2] - E[b]^2 and light on memory for large sets
        for chunk in np.array_split(members, -(-len(members) // STATS_BATCH)):
            unit = unit_batch(data, chunk)
            total = total + unit.double().sum(dim=0)
            total_squares = total_squares + blur(unit, kernel).double().pow(2).sum(dim=0)
        mean = total / len(members)
        variance = total_squares / len(members) - blur(mean[None].float(), kernel)[0].double().pow(2)
        templates.append(mean.float())
        spreads.append(variance.clamp_min(0).sqrt().float())
    return torch.stack(templates), torch.stack(spreads)


def train_classifier(net: VariantClassifier, data: FitData, groups: np.ndarray, settings: FitSettings) -> None:
    """Train the variant classifier with cross-entropy on the normal images.

    Args:
        net: the classifier, trained in place.
        data: the training images.
        groups: (N,) variant index of each image.
        settings: epochs / batch / lr (None = defaults), seed, device and log.
    """
    batch = settings.batch or DEFAULT_BATCH
    targets = torch.from_numpy(groups.astype(np.int64))

    def batches(epoch: int, rng: np.random.Generator):
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        for index in torch.randperm(len(data), generator=generator).split(batch):
            yield data.normalized(index.numpy()).to(settings.device), targets[index].to(settings.device)

    settings.loop(
        Objective(
            network=net,
            batches=batches,
            loss=lambda pair: nn.functional.cross_entropy(net(pair[0]), pair[1]),
            epochs=settings.epochs or max(1, min(100, round(CLASSIFIER_PRESENTATIONS / len(data)))),
            optimizer=lambda params: torch.optim.Adam(params, lr=settings.lr or DEFAULT_LR),
            steps_per_epoch=-(-len(data) // batch),
            keep="last",
            seed=settings.seed,
            device=settings.device,
            amp=settings.amp,
            name="variant classifier",
        )
    )
    net.eval()


class TemplateRatio(AnomalyNet):
    """Variant classifier + per-variant templates and spreads; see the module doc.

    ``forward`` returns (anomaly_map, score, reconstruction) where the "reconstruction" is the
    template of the recognised variant (normalised like the input): what the input is compared with.

    Args:
        in_chans: image channels (1 or 3).
        input_size: square input side.
        group_names: the variants' names (their count sizes the classifier and the template buffers).
        sigma: Gaussian blur (pixels) of input and template before comparing them; 0 = none.
        min_std: floor added to the spread (grey levels in [0, 1]): pixels that never varied in
            training still tolerate sensor noise.
        top_k: fraction of the hottest map pixels averaged into the score (0 = the maximum).
        classifier_width: channels of the classifier's first block.
        max_variants: the largest number of clusters tried when the variants are not given.
    """

    has_reconstruction = True

    def __init__(
        self,
        *,
        in_chans: int,
        input_size: int,
        group_names: list[str],
        sigma: float,
        min_std: float,
        top_k: float,
        classifier_width: int,
        max_variants: int,
    ):
        super().__init__()
        self.config = {
            "in_chans": in_chans,
            "input_size": input_size,
            "group_names": list(group_names),
            "sigma": sigma,
            "min_std": min_std,
            "top_k": top_k,
            "classifier_width": classifier_width,
            "max_variants": max_variants,
        }
        self._build_variants(len(group_names))
        self.register_buffer("mean", torch.zeros(in_chans))
        self.register_buffer("std", torch.ones(in_chans))
        self.register_buffer("kernel", gaussian_kernel(sigma, in_chans) if sigma > 0 else None, persistent=False)

    def _build_variants(self, variants: int) -> None:
        """(Re)create the classifier and the per-variant buffers for ``variants`` variants."""
        size, chans = self.config["input_size"], self.config["in_chans"]
        self.classifier = VariantClassifier(
            in_chans=chans, input_size=size, variants=variants, width=self.config["classifier_width"]
        )
        self.register_buffer("templates", torch.full((variants, chans, size, size), 0.5))
        self.register_buffer("spreads", torch.zeros(variants, chans, size, size))

    def fit(self, data: FitData, settings: FitSettings) -> TemplateRatio:
        """Find the variants (given or clustered), their templates and spreads, then train the
        classifier; returns self."""
        torch.manual_seed(settings.seed)
        if data.groups is not None:
            groups = np.asarray(data.groups)
            names = tuple(data.group_names) or tuple(f"variant_{i}" for i in range(int(groups.max()) + 1))
        else:
            groups, names = cluster_variants(data, self.config["max_variants"], settings.seed)
        self.config["group_names"] = list(names)
        self._build_variants(len(names))
        self.to(settings.device)
        self.mean.copy_(torch.tensor(data.mean, dtype=torch.float32))
        self.std.copy_(torch.tensor(data.std, dtype=torch.float32))
        templates, spreads = variant_statistics(data, groups, len(names), self.kernel)
        self.templates.copy_(templates)
        self.spreads.copy_(spreads)
        train_classifier(self.classifier, data, groups, settings)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        variant = self.classifier(x).argmax(dim=1)
        template = self.templates.index_select(0, variant)
        distance = (blur(to_unit(x, self.mean, self.std), self.kernel) - blur(template, self.kernel)).abs()
        tolerance = self.spreads.index_select(0, variant) + self.config["min_std"]
        anomaly_map = (distance / tolerance).mean(dim=1, keepdim=True)
        score = top_k_mean(anomaly_map.flatten(1), self.config["top_k"])
        shown = (template - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return anomaly_map, score, shown

    def card_params(self) -> dict[str, Any]:
        """Builder keywords that rebuild this module, the variant names included."""
        return {**self.config, "group_names": list(self.config["group_names"])}

    def notes(self) -> list[str]:
        """User-facing caveats."""
        names = self.config["group_names"]
        return [
            f"{len(names)} variants: {', '.join(names)}. A part unlike every variant is compared with the "
            "template of the variant the classifier finds closest.",
            "Assumes parts are placed consistently (same position and scale as in training): the templates "
            "are pixel-aligned averages.",
            "The 'reconstruction' output is the recognised variant's template.",
        ]


def _check_template(
    group_names: list[str], sigma: float, min_std: float, top_k: float, classifier_width: int, max_variants: int
) -> None:
    """Validate the template_ratio keywords (see ``template_ratio``); raises ValueError."""
    for key, value, ok, allowed in (
        ("group_names", group_names, len(group_names) >= 1, "at least one name"),
        ("sigma", sigma, isinstance(sigma, (int, float)) and 0 <= sigma <= 8, "in [0, 8] pixels"),
        ("min_std", min_std, isinstance(min_std, (int, float)) and 0 < min_std <= 1, "in (0, 1]"),
        ("top_k", top_k, isinstance(top_k, (int, float)) and 0 <= top_k < 1, "in [0, 1) (0 = the maximum)"),
        (
            "classifier_width",
            classifier_width,
            isinstance(classifier_width, int) and 4 <= classifier_width <= 128,
            "an integer 4..128",
        ),
        ("max_variants", max_variants, isinstance(max_variants, int) and 2 <= max_variants <= 64, "an integer 2..64"),
    ):
        if not ok:
            raise ValueError(f"{key}={value!r} must be {allowed}")


@register_model(
    "template_ratio",
    task="anomaly",
    description="per-variant templates picked by a small classifier; map = deviation from the "
    "template over the normal spread",
)
def template_ratio(
    *,
    in_chans: int,
    input_size: int,
    group_names: list[str] | None = None,
    sigma: float = 1.0,
    min_std: float = 0.01,
    top_k: float = 0.0,
    classifier_width: int = 16,
    max_variants: int = 12,
) -> TemplateRatio:
    """Build the template (variation model) detector.

    Args:
        in_chans: image channels (1 or 3).
        input_size: square input side, a multiple of 32.
        group_names: variant names, set by ``fit`` (from the data's groups, or clustered); given only
            when rebuilding a fitted model. None = one placeholder variant.
        sigma: Gaussian blur of input and template before comparing, in pixels, 0..8 (0 = none).
        min_std: floor of the spread in grey levels (0, 1]: the tolerance of pixels that never varied.
        top_k: fraction of the hottest pixels averaged into the score, in [0, 1) (0 = the maximum).
        classifier_width: channels of the variant classifier's first block (4..128).
        max_variants: the largest number of clusters tried when the data has no variant labels (2..64).

    Returns:
        The unfitted module.

    Raises:
        ValueError: a value out of range.
    """
    check_common(in_chans, input_size)
    names = ["variant_0"] if group_names is None else [str(name) for name in group_names]
    _check_template(names, sigma, min_std, top_k, classifier_width, max_variants)
    return TemplateRatio(
        in_chans=in_chans,
        input_size=input_size,
        group_names=names,
        sigma=float(sigma),
        min_std=float(min_std),
        top_k=float(top_k),
        classifier_width=classifier_width,
        max_variants=max_variants,
    )
