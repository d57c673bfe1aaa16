"""Building blocks shared by the built-in networks."""

from __future__ import annotations

from torch import nn


def double_conv(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """Two 3x3 convolutions, each with batch norm and ReLU; the first may be strided (a down step)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )
