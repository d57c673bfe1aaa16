"""PaDiM (Defard et al. 2020): a Gaussian per feature-map position, anomaly = Mahalanobis distance.

Backbone features of several levels are upsampled to the finest level and concatenated; a fixed random
subset of ``d`` channels keeps the covariances small. Fitting estimates, at every position, the mean and
the inverse covariance (regularised by ``eps * I``) of the normal images' features; inference measures
how far each position of a new image lies from its Gaussian.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from inspekt.models.anomaly.base import AnomalyNet, FitData, FitSettings, check_common, gaussian_kernel, smooth
from inspekt.models.anomaly.features import FeatureExtractor, map_sigma, training_batches
from inspekt.models.registry import register_model

MAX_COVARIANCE_BYTES = 1 << 30  # the per-position covariances live in memory, in the weights and in the ONNX file
DEFAULT_BATCH = 32


class Padim(AnomalyNet):
    """Per-position Gaussians of backbone features (see the module docstring)."""

    def __init__(
        self,
        *,
        in_chans: int,
        input_size: int,
        backbone: str,
        layers: tuple[int, ...],
        d: int,
        eps: float,
        sigma: float,
        weights: str | None,
    ):
        super().__init__()
        self.in_chans, self.input_size, self.eps = in_chans, input_size, eps
        # random residual branches make richer random features for the Gaussians (dice image AUROC 0.96
        # instead of 0.87 with timm's zeroed residual branches)
        self.extractor = FeatureExtractor(
            backbone=backbone, in_chans=in_chans, layers=layers, weights=weights, zero_init_last=False
        )
        total = sum(self.extractor.channels)
        if not isinstance(d, int) or not 1 <= d <= total:
            raise ValueError(
                f"d={d!r} must be an integer 1..{total} (the channels of {backbone} layers {list(layers)})"
            )
        self.grid = input_size // self.extractor.strides[0]
        positions = self.grid**2
        needed = positions * d * d * 8 * 3  # the fit's peak: float64 sums, their inverse and its factor
        if needed > MAX_COVARIANCE_BYTES:
            raise ValueError(
                f"d={d} at input_size={input_size} needs {needed / 2**30:.1f} GiB for its covariances "
                f"({positions} positions x {d}x{d}), over the {MAX_COVARIANCE_BYTES / 2**30:.0f} GiB "
                "bound; lower d or input_size, or use patchcore"
            )
        self.register_buffer("channel_index", torch.arange(d))
        self.register_buffer("mean", torch.zeros(positions, d))
        # precision = factor @ factor.T, so the squared distance is a sum of squares: never negative
        self.register_buffer("precision_factor", torch.eye(d).expand(positions, d, d).contiguous())
        self.register_buffer("kernel", gaussian_kernel(sigma), persistent=False)
        self.layers, self.sigma = tuple(layers), sigma

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) images -> (N, d, h, w) chosen channels of the concatenated feature levels."""
        maps = self.extractor(x)
        size = maps[0].shape[-2:]
        upsampled = [maps[0]] + [nn.functional.interpolate(m, size=size, mode="nearest") for m in maps[1:]]
        return torch.cat(upsampled, dim=1).index_select(1, self.channel_index)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = self.embed(x)
        # (P, N, d): one batched matmul per position against that position's precision factor
        delta = embedding.flatten(2).permute(2, 0, 1) - self.mean.unsqueeze(1)
        squared = torch.bmm(delta, self.precision_factor).pow(2).sum(dim=2)
        distance = squared.sqrt().transpose(0, 1).reshape(-1, 1, self.grid, self.grid)
        full = nn.functional.interpolate(
            distance, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False
        )
        anomaly_map = smooth(full, self.kernel)
        return anomaly_map, anomaly_map.flatten(1).amax(dim=1)

    def fit(self, data: FitData, settings: FitSettings) -> Padim:
        """Estimate the per-position Gaussians from the normal images.

        Args:
            data: normal training images.
            settings: seed (channel subset), batch, device and progress log; epochs and lr are unused.

        Returns:
            self.
        """
        self.to(settings.device)
        total = sum(self.extractor.channels)
        generator = torch.Generator().manual_seed(settings.seed)
        chosen = torch.randperm(total, generator=generator)[: self.channel_index.numel()].sort().values
        self.channel_index.copy_(chosen)
        mean, covariance = self._moments(data, settings)
        eye = torch.eye(covariance.shape[-1], dtype=covariance.dtype, device=covariance.device)
        precision = torch.linalg.inv(covariance + self.eps * eye)
        precision = (precision + precision.transpose(1, 2)) / 2  # exact symmetry for the Cholesky factor
        self.mean.copy_(mean.float())
        self.precision_factor.copy_(torch.linalg.cholesky(precision).float())
        return self

    @torch.no_grad()
    def _moments(self, data: FitData, settings: FitSettings) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-position mean (P, d) and covariance (P, d, d) in float64, in one pass over the images."""
        shift = None  # sums are taken around the first batch's mean: avoids cancellation in E[xx] - E[x]^2
        count, first, second = 0, 0.0, 0.0
        for x in training_batches(data, settings, DEFAULT_BATCH):
            rows = self.embed(x).flatten(2).permute(2, 0, 1).double()  # (P, B, d)
            if shift is None:
                shift = rows.mean(dim=1, keepdim=True)
            rows = rows - shift
            count += rows.shape[1]
            first = first + rows.sum(dim=1)
            if isinstance(second, float):
                second = torch.bmm(rows.transpose(1, 2), rows)
            else:
                second.baddbmm_(rows.transpose(1, 2), rows)  # in place: no new (P, d, d) tensor per batch
        mean = first / count
        covariance = (second - count * mean.unsqueeze(2) * mean.unsqueeze(1)) / max(count - 1, 1)
        return mean + shift.squeeze(1), covariance

    def card_params(self) -> dict[str, Any]:
        return {
            "in_chans": self.in_chans,
            "input_size": self.input_size,
            "backbone": self.extractor.backbone,
            "layers": list(self.layers),
            "d": int(self.channel_index.numel()),
            "eps": self.eps,
            "sigma": self.sigma,
        }

    def notes(self) -> list[str]:
        return self.extractor.notes()


@register_model(
    "padim", task="anomaly", description="PaDiM: per-position Gaussians of backbone features (Defard et al. 2020)"
)
def padim(
    *,
    in_chans: int,
    input_size: int,
    backbone: str = "resnet18",
    layers: list[int] | tuple[int, ...] = (1, 2, 3),
    d: int = 100,
    eps: float = 0.01,
    sigma: float | None = None,
    weights: str | None = None,
) -> Padim:
    """Build PaDiM over a timm backbone (random weights unless ``weights`` names a local file).

    Args:
        in_chans: input channels (1 or 3).
        input_size: square input side, a multiple of 32.
        backbone: timm architecture whose features are modelled.
        layers: feature levels (timm ``out_indices``); the first sets the map resolution.
        d: channels kept of the concatenated levels (a fixed random subset chosen at fit).
        eps: covariance regularisation, added to the diagonal before inversion.
        sigma: Gaussian smoothing of the anomaly map in pixels (None: 4 at 256 px, scaled with input_size).
        weights: a local .safetensors / .pth state dict of ``backbone`` (not kept in the card: the weights
            travel in the model's state dict).

    Returns:
        The unfitted model.

    Raises:
        ValueError: a value out of range, or covariances over the memory bound.
    """
    check_common(in_chans, input_size)
    if not isinstance(eps, (int, float)) or not 0 < eps <= 10:
        raise ValueError(f"eps={eps!r} must lie in (0, 10]")
    sigma = map_sigma(sigma, input_size)
    return Padim(
        in_chans=in_chans,
        input_size=input_size,
        backbone=backbone,
        layers=tuple(layers),
        d=d,
        eps=float(eps),
        sigma=sigma,
        weights=weights,
    )
