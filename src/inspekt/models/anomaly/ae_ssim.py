"""Convolutional autoencoder trained with an SSIM + L1 loss (Bergmann et al. 2019, "Improving
unsupervised defect segmentation by applying structural similarity to autoencoders").

The network learns to reconstruct normal images through a small dense bottleneck; a defect is not
reconstructed, so the local SSIM between the input and its reconstruction drops there. The anomaly
map is ``1 - SSIM`` (optionally smoothed) and the image score the mean of its hottest pixels.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from inspekt.models.anomaly.base import (
    AnomalyNet,
    FitData,
    FitSettings,
    check_common,
    gaussian_kernel,
    smooth,
    top_k_mean,
)
from inspekt.models.anomaly.ssim import SSIM, from_unit, to_unit
from inspekt.models.loop import Objective
from inspekt.models.registry import register_model

BOTTLENECK_GRID = 8  # the encoder halves the image until it is 8 x 8, whatever the input size
MAX_DOUBLINGS = 3  # channels double per stage up to 8 x width, which bounds the parameter count
L1_WEIGHT = 1.0  # SSIM alone ignores flat brightness offsets; L1 keeps the grey levels right
TRAIN_PRESENTATIONS = 30_000  # default training length in images shown, so small datasets get more epochs
MAX_DEFAULT_EPOCHS = 300
DEFAULT_BATCH = 16
DEFAULT_LR = 1e-3
MAX_SHIFT = 2  # pixels of random translation: parts are never placed exactly the same way
GAIN_JITTER = 0.05  # relative brightness / contrast jitter: lighting drifts between shots


class BandedSSIM(SSIM):
    """``ssim.SSIM`` with the Gaussian window applied as two banded matrix products (rows, then
    columns) instead of a depthwise convolution: the same values (replicate padding folded into the
    matrix), but about 50x faster to back-propagate through on a CPU, which made SSIM training
    impractical. Needs square ``size`` x ``size`` inputs.

    Args:
        channels: image channels.
        size: the input side.
    """

    def __init__(self, channels: int, size: int):
        super().__init__(channels)
        taps = self.window[0, 0].sum(dim=0)  # the 2-D window is an outer product: its marginal is the 1-D one
        radius = len(taps) // 2
        # row i averages pixels i - radius .. i + radius; clamping the indices repeats the edge pixel
        columns = (torch.arange(size).view(-1, 1) + torch.arange(-radius, radius + 1)).clamp(0, size - 1)
        band = torch.zeros(size, size).scatter_add_(1, columns, taps.expand(size, -1).contiguous())
        self.register_buffer("band", band, persistent=False)
        self.register_buffer("band_t", band.t().contiguous(), persistent=False)

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        return self.band @ x @ self.band_t


def _conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    kernel = 4 if stride == 2 else 3
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=1), nn.LeakyReLU(0.2, inplace=True))


def _up(c_in: int, c_out: int) -> nn.Sequential:
    # nearest upsampling + convolution rather than a transposed convolution: no checkerboard artefacts
    return nn.Sequential(nn.Upsample(scale_factor=2.0, mode="nearest"), _conv(c_in, c_out))


class ConvAutoencoder(nn.Module):
    """Strided convolutions down to an 8 x 8 grid, a dense ``latent``-sized code, upsampling back.

    Args:
        in_chans: image channels.
        input_size: square input side (a multiple of 32).
        width: channels of the first stage; doubles per stage up to ``8 * width``.
        latent: size of the code vector the whole image is squeezed through.
    """

    def __init__(self, *, in_chans: int, input_size: int, width: int, latent: int):
        super().__init__()
        stages = int(math.log2(input_size // BOTTLENECK_GRID))
        widths = [width * 2 ** min(i, MAX_DOUBLINGS) for i in range(stages)]
        down = [_conv(c_in, c_out, stride=2) for c_in, c_out in zip([in_chans] + widths[:-1], widths)]
        self.encoder = nn.Sequential(
            *down, _conv(widths[-1], widths[-1]), nn.Conv2d(widths[-1], latent, BOTTLENECK_GRID)
        )
        up = [nn.ConvTranspose2d(latent, widths[-1], BOTTLENECK_GRID), nn.LeakyReLU(0.2, inplace=True)]
        up += [_up(c_in, c_out) for c_in, c_out in zip(widths[::-1], widths[::-1][1:])]
        # the last stage upsamples straight to the output: a convolution at full resolution costs most
        self.decoder = nn.Sequential(
            *up,
            nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False),
            nn.Conv2d(width, in_chans, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def default_epochs(images: int) -> int:
    """Epochs that show the network about ``TRAIN_PRESENTATIONS`` images (at least 1, at most 300)."""
    return int(min(MAX_DEFAULT_EPOCHS, max(1, round(TRAIN_PRESENTATIONS / max(1, images)))))


def unit_batch(data: FitData, index: np.ndarray) -> torch.Tensor:
    """The training images at ``index`` as (N, C, H, W) float32 in [0, 1]."""
    return torch.from_numpy(data.images[index]).permute(0, 3, 1, 2).float() / 255.0


def augment(unit: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random small shift and brightness / contrast change of a (N, C, H, W) batch in [0, 1].

    Args:
        unit: images in [0, 1].
        generator: the seeded source of randomness.

    Returns:
        The augmented batch, clipped to [0, 1].
    """
    dy, dx = (int(v) for v in torch.randint(-MAX_SHIFT, MAX_SHIFT + 1, (2,), generator=generator))
    shifted = torch.roll(unit, shifts=(dy, dx), dims=(2, 3))
    gain = 1 + GAIN_JITTER * (2 * torch.rand(len(unit), 1, 1, 1, generator=generator) - 1)
    offset = GAIN_JITTER * (2 * torch.rand(len(unit), 1, 1, 1, generator=generator) - 1)
    return (shifted * gain + offset).clamp(0, 1)


def train_autoencoder(
    net: ConvAutoencoder, data: FitData, settings: FitSettings, ssim: SSIM, mean: torch.Tensor, std: torch.Tensor
) -> None:
    """Train ``net`` to reconstruct the (augmented) training images under the SSIM + L1 loss.

    Args:
        net: the autoencoder, trained in place.
        data: the normal training images.
        settings: epochs / batch / lr (None = the defaults above), seed, device and log.
        ssim: the SSIM module of the loss.
        mean: per-channel normalisation mean (C,).
        std: per-channel normalisation std (C,).
    """
    batch = settings.batch or DEFAULT_BATCH
    steps = math.ceil(len(data) / batch)

    def batches(epoch: int, rng: np.random.Generator):
        generator = torch.Generator().manual_seed(int(rng.integers(2**31)))
        for index in torch.randperm(len(data), generator=generator).split(batch):
            yield augment(unit_batch(data, index.numpy()), generator).to(settings.device)

    def loss(unit: torch.Tensor) -> torch.Tensor:
        recon = to_unit(net(from_unit(unit, mean, std)), mean, std)
        return (1 - ssim(unit, recon)).mean() + L1_WEIGHT * (unit - recon).abs().mean()

    settings.loop(
        Objective(
            network=net,
            batches=batches,
            loss=loss,
            epochs=settings.epochs or default_epochs(len(data)),
            optimizer=lambda params: torch.optim.Adam(params, lr=settings.lr or DEFAULT_LR),
            schedule=lambda optimizer, total: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total),
            steps_per_epoch=steps,
            keep="last",  # cosine annealing to zero: the final weights are the trained ones
            seed=settings.seed,
            device=settings.device,
            amp=settings.amp,
        )
    )
    net.eval()


class AESSIM(AnomalyNet):
    """Autoencoder anomaly detector: map = 1 - local SSIM(input, reconstruction), score = top-k mean.

    Args:
        in_chans: image channels (1 or 3).
        input_size: square input side.
        width: channels of the first encoder stage.
        latent: size of the bottleneck code.
        top_k: fraction of the hottest map pixels averaged into the score (0 = the maximum).
        smooth_sigma: Gaussian smoothing of the map in pixels (0 = none).
    """

    has_reconstruction = True

    def __init__(self, *, in_chans: int, input_size: int, width: int, latent: int, top_k: float, smooth_sigma: float):
        super().__init__()
        self.config = {
            "in_chans": in_chans,
            "input_size": input_size,
            "width": width,
            "latent": latent,
            "top_k": top_k,
            "smooth_sigma": smooth_sigma,
        }
        self.autoencoder = ConvAutoencoder(in_chans=in_chans, input_size=input_size, width=width, latent=latent)
        self.ssim = BandedSSIM(in_chans, input_size)
        self.register_buffer("mean", torch.zeros(in_chans))
        self.register_buffer("std", torch.ones(in_chans))
        self.register_buffer("kernel", gaussian_kernel(smooth_sigma) if smooth_sigma > 0 else None, persistent=False)

    def fit(self, data: FitData, settings: FitSettings) -> AESSIM:
        """Store the normalisation and train the autoencoder on the normal images; returns self."""
        torch.manual_seed(settings.seed)
        self.to(settings.device)
        self.mean.copy_(torch.tensor(data.mean, dtype=torch.float32))
        self.std.copy_(torch.tensor(data.std, dtype=torch.float32))
        train_autoencoder(self.autoencoder, data, settings, self.ssim, self.mean, self.std)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        reconstruction = self.autoencoder(x)
        similarity = self.ssim(to_unit(x, self.mean, self.std), to_unit(reconstruction, self.mean, self.std))
        anomaly_map = 1 - similarity
        if self.kernel is not None:
            anomaly_map = smooth(anomaly_map, self.kernel)
        score = top_k_mean(anomaly_map.flatten(1), self.config["top_k"])
        return anomaly_map, score, reconstruction

    def card_params(self) -> dict[str, Any]:
        """Builder keywords that rebuild this module."""
        return dict(self.config)

    def notes(self) -> list[str]:
        """User-facing caveats."""
        return [
            "Trained from scratch (no pretrained weights): needs a few hundred normal images or more.",
            "Defects the autoencoder can reproduce (e.g. small dark spots on dark areas) stay invisible.",
        ]


def check_autoencoder(width: int, latent: int) -> None:
    """Validate the autoencoder keywords.

    Raises:
        ValueError: ``width`` not an integer 4..128, or ``latent`` not an integer 2..4096.
    """
    if not isinstance(width, int) or not 4 <= width <= 128:
        raise ValueError(f"width={width!r} must be an integer 4..128")
    if not isinstance(latent, int) or not 2 <= latent <= 4096:
        raise ValueError(f"latent={latent!r} must be an integer 2..4096")


def check_map(top_k: float, smooth_sigma: float) -> None:
    """Validate the score / map keywords.

    Raises:
        ValueError: ``top_k`` outside [0, 1), or ``smooth_sigma`` outside [0, 8].
    """
    if not isinstance(top_k, (int, float)) or not 0 <= top_k < 1:
        raise ValueError(f"top_k={top_k!r} must be in [0, 1) (0 = the map's maximum)")
    if not isinstance(smooth_sigma, (int, float)) or not 0 <= smooth_sigma <= 8:
        raise ValueError(f"smooth_sigma={smooth_sigma!r} must be in [0, 8] pixels (0 = no smoothing)")


@register_model(
    "ae_ssim",
    task="anomaly",
    description="convolutional autoencoder, SSIM + L1 loss; map = 1 - SSIM(input, reconstruction)",
)
def ae_ssim(
    *, in_chans: int, input_size: int, width: int = 8, latent: int = 128, top_k: float = 0.01, smooth_sigma: float = 2.0
) -> AESSIM:
    """Build the SSIM autoencoder.

    Args:
        in_chans: image channels (1 or 3).
        input_size: square input side, a multiple of 32.
        width: channels of the first encoder stage (4..128); doubles per stage up to 8 x width.
        latent: bottleneck code size (2..4096): smaller forgets more detail, defects included.
        top_k: fraction of the hottest map pixels averaged into the image score, in [0, 1) (0 = max).
        smooth_sigma: Gaussian smoothing of the anomaly map in pixels, 0..8 (0 = none).

    Returns:
        The unfitted module.

    Raises:
        ValueError: a value out of range.
    """
    check_common(in_chans, input_size)
    check_autoencoder(width, latent)
    check_map(top_k, smooth_sigma)
    return AESSIM(
        in_chans=in_chans,
        input_size=input_size,
        width=width,
        latent=latent,
        top_k=float(top_k),
        smooth_sigma=float(smooth_sigma),
    )
