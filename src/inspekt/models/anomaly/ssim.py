"""Local structural similarity (SSIM, Wang et al. 2004) as torch operations: a training loss and an
anomaly map for reconstruction methods. Plain convolutions, so it exports to ONNX."""

from __future__ import annotations

import torch
from torch import nn

from inspekt.models.anomaly.base import gaussian_kernel


class SSIM(nn.Module):
    """Per-pixel SSIM between two (N, C, H, W) images in [0, 1], averaged over channels -> (N, 1, H, W).

    Args:
        channels: image channels.
        sigma: standard deviation of the Gaussian window (1.5 in the paper; k = 2 * ceil(3 sigma) + 1).
    """

    def __init__(self, channels: int, sigma: float = 1.5):
        super().__init__()
        self.register_buffer("window", gaussian_kernel(sigma, channels), persistent=False)
        self.c1, self.c2 = 0.01**2, 0.03**2

    def _blur(self, x: torch.Tensor) -> torch.Tensor:
        pad = self.window.shape[-1] // 2
        return nn.functional.conv2d(nn.functional.pad(x, (pad,) * 4, mode="replicate"), self.window, groups=x.shape[1])

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if torch.is_autocast_enabled(a.device.type):  # mixed-precision training: E[x^2] - mu^2 cancels in fp16
            with torch.autocast(a.device.type, enabled=False):
                return self._ssim(a.float(), b.float())
        return self._ssim(a, b)

    def _ssim(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mu_a, mu_b = self._blur(a), self._blur(b)
        var_a = self._blur(a * a) - mu_a * mu_a
        var_b = self._blur(b * b) - mu_b * mu_b
        cov = self._blur(a * b) - mu_a * mu_b
        num = (2 * mu_a * mu_b + self.c1) * (2 * cov + self.c2)
        den = (mu_a * mu_a + mu_b * mu_b + self.c1) * (var_a + var_b + self.c2)
        return (num / den).mean(dim=1, keepdim=True)


def from_unit(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """[0, 1] pixel values (N, C, H, W) -> the normalised model input space (the inverse of ``to_unit``)."""
    return (x - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def to_unit(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Normalised (N, C, H, W) inputs back to [0, 1] pixel values (``mean``/``std`` shaped (C,))."""
    return x * std.view(1, -1, 1, 1) + mean.view(1, -1, 1, 1)
