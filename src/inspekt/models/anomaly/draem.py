"""DRAEM (Zavrtanik et al., ICCV 2021), sized for CPUs and trained from scratch.

Two networks learn together on normal images with synthetic anomalies pasted in (``synthetic.py``):
a reconstructive encoder-decoder, without skip connections so that it cannot copy a defect through,
learns to repaint the normal image (L2 + SSIM loss), and a discriminative UNet sees the input next to
its reconstruction and segments the pasted region (focal loss). At inference the anomaly map is the
discriminative network's anomaly probability and the image score is the maximum of that map after
a small box filter (3 px at 128 px), so that a single hot pixel does not decide alone. The paper's wider
window (21 px at 256 px) dilutes small defects: on the dice set it cost 0.5 to 1 point of image AUROC.

Sized for CPUs: both networks start at 8 channels, the discriminative UNet's first convolution is
strided, the SSIM loss is computed at half resolution, and an epoch is a fixed number of images
(``epoch_images``), so the training time does not grow with the dataset.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from inspekt.models.anomaly.base import AnomalyNet, FitData, FitSettings, check_common
from inspekt.models.anomaly.ssim import SSIM, from_unit, to_unit
from inspekt.models.anomaly.synthetic import SyntheticAnomalies
from inspekt.models.layers import double_conv
from inspekt.models.loop import Objective
from inspekt.models.registry import register_model
from inspekt.models.segment import TinyUNet

DEPTH = 4  # down-sampling steps of both networks: the bottleneck is input_size / 16 pixels wide


class Reconstructor(nn.Module):
    """Strided-convolution encoder down to ``input_size / 16`` and an upsampling decoder back, with no
    skip connections: everything must pass the bottleneck, which keeps the normal appearance only."""

    def __init__(self, in_chans: int, width: int):
        super().__init__()
        widths = [width * 2**i for i in range(DEPTH)]
        self.encoder = nn.Sequential(
            *[double_conv(c_in, c_out, stride=2) for c_in, c_out in zip([in_chans] + widths[:-1], widths)]
        )
        decoder = []
        for c_in, c_out in zip(reversed(widths), list(reversed(widths))[1:] + [width]):
            decoder += [nn.Upsample(scale_factor=2.0, mode="bilinear", align_corners=False), double_conv(c_in, c_out)]
        self.decoder = nn.Sequential(*decoder)
        self.head = nn.Conv2d(width, in_chans, 3, padding=1)
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.decoder(self.encoder(x)))


def warmup_share(total: int) -> float:
    """The share of the one-cycle schedule spent warming up: a tenth, but never ending on step 1 (10
    steps in all), where torch's OneCycleLR divides by zero."""
    return 0.1 if total != 10 else 0.15


def focal_loss(logits: torch.Tensor, masks: torch.Tensor, gamma: float = 2.0) -> torch.Tensor:
    """Mean focal loss (Lin et al. 2017) of 2-class logits (N, 2, H, W) against 0/1 masks (N, H, W):
    down-weights the easy background pixels that make up most of every image."""
    log_p = torch.log_softmax(logits, dim=1).gather(1, masks.long().unsqueeze(1)).squeeze(1)
    return (-((1 - log_p.exp()) ** gamma) * log_p).mean()


class DRAEM(AnomalyNet):
    """Reconstructive + discriminative networks; see the module docstring and ``draem`` for the keywords."""

    has_reconstruction = True

    def __init__(
        self,
        *,
        in_chans: int,
        input_size: int,
        width: int,
        epochs: int,
        lr: float,
        batch: int,
        anomaly_ratio: float,
        score_window: float,
        epoch_images: int,
        stem_stride: int,
    ):
        super().__init__()
        self.in_chans, self.input_size, self.width = in_chans, input_size, width
        self.epochs, self.lr, self.batch = epochs, lr, batch
        self.anomaly_ratio, self.score_window, self.epoch_images = anomaly_ratio, score_window, epoch_images
        self.stem_stride = stem_stride
        self.reconstructor = Reconstructor(in_chans, width)
        self.discriminator = TinyUNet(
            num_classes=2, in_chans=2 * in_chans, width=width, depth=DEPTH, stem_stride=stem_stride
        )
        self.register_buffer("mean", torch.zeros(in_chans))
        self.register_buffer("std", torch.ones(in_chans))
        # an odd window keeps the pooled map centred on the pixels it summarises
        self.pool_size = int(round(score_window * input_size)) // 2 * 2 + 1

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        reconstruction = self.reconstructor(x).contiguous()
        logits = self.discriminator(torch.cat([x, reconstruction], dim=1))
        anomaly_map = torch.softmax(logits, dim=1)[:, 1:2].contiguous()
        pooled = nn.functional.avg_pool2d(anomaly_map, self.pool_size, stride=1) if self.pool_size > 1 else anomaly_map
        return anomaly_map, pooled.flatten(1).amax(dim=1), reconstruction

    def fit(self, data: FitData, settings: FitSettings) -> DRAEM:
        """Train both networks on synthetic anomalies over ``data``'s normal images.

        Args:
            data: the normal training images and the card's normalisation.
            settings: epochs / batch / lr override the builder's values when not None; seed and log.

        Returns:
            self, in eval mode.
        """
        rng = self._start(data, settings)
        epochs = settings.epochs or self.epochs
        # at least 2 per batch: batch norm needs 2 values per channel at a 1-pixel bottleneck
        batch = max(2, min(settings.batch or self.batch, len(data)))
        # an epoch is epoch_images draws whatever the dataset size (small sets are cycled, each draw with a
        # fresh synthetic anomaly), so a few dozen images get as many steps as thousands
        steps = max(1, self.epoch_images // batch)
        lr = settings.lr or self.lr
        synthetic = SyntheticAnomalies(data.images, rng, self.anomaly_ratio)
        ssim = SSIM(self.in_chans).to(settings.device)

        def batches(epoch: int, epoch_rng: np.random.Generator):
            synthetic.rng = epoch_rng  # each epoch's anomalies and order from (seed, epoch): resumable
            order = epoch_rng.permutation(len(data))
            for step in range(steps):
                yield order[np.arange(step * batch, (step + 1) * batch) % len(data)]

        settings.loop(
            Objective(
                network=self,
                batches=batches,
                loss=lambda index: self._loss(data, index, synthetic, ssim, settings.device),
                epochs=epochs,
                optimizer=lambda params: torch.optim.Adam(params, lr=lr),
                schedule=lambda optimizer, total: torch.optim.lr_scheduler.OneCycleLR(
                    optimizer, max_lr=lr, total_steps=total, pct_start=warmup_share(total)
                ),
                steps_per_epoch=steps,
                keep="last",  # the one-cycle schedule ends on its best weights; the loss is on synthetic defects
                seed=settings.seed,
                device=settings.device,
                amp=settings.amp,
            )
        )
        return self.eval()

    def _start(self, data: FitData, settings: FitSettings) -> np.random.Generator:
        """Seed, re-initialise the weights, store the normalisation and enter training mode; returns the
        generator of the synthetic anomalies and batch order."""
        torch.manual_seed(settings.seed)
        for module in self.modules():  # the builder's initial weights came from an unseeded generator
            if module is not self and hasattr(module, "reset_parameters"):
                module.reset_parameters()
        self.mean.copy_(torch.as_tensor(data.mean, dtype=torch.float32))
        self.std.copy_(torch.as_tensor(data.std, dtype=torch.float32))
        self.to(settings.device).train()
        return np.random.default_rng(settings.seed)

    def _loss(
        self, data: FitData, index: np.ndarray, synthetic: SyntheticAnomalies, ssim: SSIM, device: torch.device
    ) -> torch.Tensor:
        """Reconstruction (L2 + SSIM) plus segmentation (focal) loss on one synthetic batch."""
        clean = data.images[index].astype(np.float32) / 255
        augmented, masks = synthetic.batch(clean)
        target, augmented = self._normalise(clean, device), self._normalise(augmented, device)
        reconstruction = self.reconstructor(augmented).contiguous()
        logits = self.discriminator(torch.cat([augmented, reconstruction], dim=1))
        similarity = ssim(self._half_pixels(reconstruction), self._half_pixels(target))
        return (
            nn.functional.mse_loss(reconstruction, target)
            + (1 - similarity).mean()
            + focal_loss(logits, torch.from_numpy(masks).to(device))
        )

    def _half_pixels(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised inputs -> [0, 1] pixels at half resolution, where the SSIM loss is computed: 4x
        cheaper on CPUs, and the bottleneck cannot reproduce finer structure anyway."""
        return nn.functional.avg_pool2d(to_unit(x, self.mean, self.std), 2)

    def _normalise(self, pixels: np.ndarray, device: torch.device) -> torch.Tensor:
        """(B, H, W, C) float [0, 1] pixels -> normalised (B, C, H, W) inputs on ``device``."""
        return from_unit(torch.from_numpy(pixels).to(device).permute(0, 3, 1, 2), self.mean, self.std)

    def card_params(self) -> dict[str, Any]:
        """Builder keywords that rebuild this module."""
        return {
            "in_chans": self.in_chans,
            "input_size": self.input_size,
            "width": self.width,
            "epochs": self.epochs,
            "lr": self.lr,
            "batch": self.batch,
            "anomaly_ratio": self.anomaly_ratio,
            "score_window": self.score_window,
            "epoch_images": self.epoch_images,
            "stem_stride": self.stem_stride,
        }

    def notes(self) -> list[str]:
        """User-facing caveats."""
        return [
            "trained from scratch on synthetic anomalies (Perlin-noise blobs of procedural textures and "
            "shifted training images): defects unlike those may score lower",
            "the anomaly map is a probability from the discriminative network; the image score is its "
            f"maximum after a {self.pool_size} px box filter",
        ]


@register_model(
    "draem",
    task="anomaly",
    description="DRAEM: reconstruct + segment synthetic anomalies, trained from scratch (CPU-sized)",
)
def draem(
    *,
    in_chans: int,
    input_size: int,
    width: int = 8,
    epochs: int = 10,
    lr: float = 2e-3,
    batch: int = 16,
    anomaly_ratio: float = 0.5,
    score_window: float = 0.02,
    epoch_images: int = 3200,
    stem_stride: int = 2,
) -> DRAEM:
    """Build a DRAEM anomaly model.

    Args:
        in_chans: input channels (1 or 3).
        input_size: square input side, a multiple of 32.
        width: channels of the first level of both networks; doubles at each of the 4 levels down.
        epochs: training epochs; an epoch is ``epoch_images`` draws from the training images (cycled
            when there are fewer), each with a fresh synthetic anomaly or none.
        lr: peak learning rate of the one-cycle Adam schedule.
        batch: images per optimisation step.
        anomaly_ratio: fraction of training samples that receive a synthetic anomaly.
        score_window: side of the box filter applied to the anomaly map before its maximum becomes
            the image score, as a fraction of ``input_size``; 0 takes the raw maximum.
        epoch_images: images drawn per epoch: the training time is the same for any dataset size.
        stem_stride: stride of the discriminative network's first convolution: 2 is about 3x cheaper
            and loses only detail finer than 2 pixels, 1 keeps full resolution.

    Raises:
        ValueError: a keyword out of range.
    """
    check_common(in_chans, input_size)
    for key, value, ok, allowed in (
        ("width", width, isinstance(width, int) and 4 <= width <= 128, "an integer 4..128"),
        ("epochs", epochs, isinstance(epochs, int) and 1 <= epochs <= 10000, "an integer 1..10000"),
        ("lr", lr, isinstance(lr, (int, float)) and 0 < lr <= 1, "in (0, 1]"),
        ("batch", batch, isinstance(batch, int) and 2 <= batch <= 1024, "an integer 2..1024"),
        (
            "anomaly_ratio",
            anomaly_ratio,
            isinstance(anomaly_ratio, (int, float)) and 0 < anomaly_ratio < 1,
            "in (0, 1)",
        ),
        (
            "score_window",
            score_window,
            isinstance(score_window, (int, float)) and 0 <= score_window <= 0.5,
            "in [0, 0.5]",
        ),
        ("epoch_images", epoch_images, isinstance(epoch_images, int) and epoch_images >= 1, "an integer >= 1"),
        ("stem_stride", stem_stride, stem_stride in (1, 2), "1 or 2"),
    ):
        if not ok:
            raise ValueError(f"{key}={value!r} must be {allowed}")
    return DRAEM(
        in_chans=in_chans,
        input_size=input_size,
        width=width,
        epochs=epochs,
        lr=float(lr),
        batch=batch,
        anomaly_ratio=float(anomaly_ratio),
        score_window=float(score_window),
        epoch_images=epoch_images,
        stem_stride=stem_stride,
    )
