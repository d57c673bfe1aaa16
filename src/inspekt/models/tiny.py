"""A small CNN classifier for tiny datasets and for tests: trains in seconds on a CPU."""

from __future__ import annotations

import torch
from torch import nn

from inspekt.models.layers import double_conv
from inspekt.models.registry import register_model


def _down(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """A double convolution, then a 2x2 max-pool (one flat Sequential: the weights' names stay)."""
    return nn.Sequential(*double_conv(c_in, c_out, stride), nn.MaxPool2d(2))


class TinyCNN(nn.Module):
    """Four conv blocks, global average pooling, a linear head; ``features`` is the last conv stage.
    ``stem_stride=2`` makes the first convolution strided: about 3x cheaper on large inputs."""

    def __init__(
        self, *, num_classes: int, in_chans: int, width: int, dropout: float, stem_stride: int = 1, pool: str = "avg"
    ):
        super().__init__()
        self.pool = pool
        widths = [width, width * 2, width * 4, width * 8]
        strides = [stem_stride, 1, 1, 1]
        self.features = nn.Sequential(
            *[_down(c_in, c_out, s) for c_in, c_out, s in zip([in_chans] + widths, widths, strides)]
        )
        pooled = widths[-1] * (2 if pool == "avgmax" else 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(pooled, num_classes))

    def pre_logits(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled features the head classifies (the model's embedding of the image)."""
        # mean / amax over H, W rather than adaptive pooling: exports to ONNX as plain ReduceMean / ReduceMax
        features = self.features(x)
        if self.pool == "avg":
            return features.mean(dim=(2, 3))
        if self.pool == "max":
            return features.amax(dim=(2, 3))
        return torch.cat([features.mean(dim=(2, 3)), features.amax(dim=(2, 3))], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pre_logits(x))


@register_model("tiny_cnn", task="classify", description="small 4-block CNN, trains from scratch in seconds")
def tiny_cnn(
    *,
    num_classes: int,
    in_chans: int = 3,
    width: int = 16,
    dropout: float = 0.1,
    stem_stride: int = 1,
    pool: str = "avg",
) -> TinyCNN:
    """Build the tiny CNN classifier.

    Args:
        num_classes: number of output classes.
        in_chans: input channels (1 or 3).
        width: channels of the first block; doubles at each of the four blocks.
        dropout: dropout before the linear head.
        stem_stride: 1, or 2 for a strided first convolution (large inputs, CPU budgets).
        pool: global pooling before the head: ``avg``, ``max`` or ``avgmax`` (both, concatenated).
            Max pooling keeps a small defect's signal, which averaging over the image dilutes.
    """
    for key, value, ok in (
        ("num_classes", num_classes, isinstance(num_classes, int) and num_classes >= 2),
        ("in_chans", in_chans, in_chans in (1, 3)),
        ("width", width, isinstance(width, int) and 1 <= width <= 512),
        ("dropout", dropout, isinstance(dropout, (int, float)) and 0 <= dropout < 1),
        ("stem_stride", stem_stride, stem_stride in (1, 2)),
        ("pool", pool, pool in ("avg", "max", "avgmax")),
    ):
        if not ok:
            raise ValueError(
                f"{key}={value!r} is out of range (num_classes >= 2, in_chans 1 or 3, "
                "width an integer 1..512, dropout in [0, 1), stem_stride 1 or 2, pool avg, max or avgmax)"
            )
    return TinyCNN(
        num_classes=num_classes, in_chans=in_chans, width=width, dropout=dropout, stem_stride=stem_stride, pool=pool
    )
