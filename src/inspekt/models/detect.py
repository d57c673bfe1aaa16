"""Box detectors: a CenterNet-style head (Zhou et al. 2019, "Objects as Points") over a feature
pyramid, on the built-in small encoder or any timm encoder (random init; ``--pretrained FILE``).

Every network maps (N, C_in, H, W) to two maps at a quarter of the input resolution (``STRIDE``):

* ``heatmap`` (N, classes, H/4, W/4): the probability that an object of a class is centred in a cell;
* ``boxes`` (N, 4, H/4, W/4): the distances (left, top, right, bottom) in input pixels from the
  cell's centre to the edges of the box of the object centred there.

No NMS and no top-k in the graph: boxes are read off the maps by peak extraction (a 3x3 max filter,
``inspekt.tasks.detect.predict``), the same NumPy code after either backend, so the exported graph
is plain convolutions and runs identically in ONNX Runtime and torch. H and W must be multiples of 32.
"""

from __future__ import annotations

import torch
from torch import nn

from inspekt.errors import did_you_mean
from inspekt.models.layers import double_conv
from inspekt.models.registry import register_model

STRIDE = 4  # input pixels per output cell
HEAT_PRIOR = 0.01  # initial heat-map probability: few cells hold an object (Lin et al. 2017's prior)
MAX_LOG_DISTANCE = 8.0  # exp(8) * 4 px: boxes up to ~12,000 input pixels; keeps exp finite


def _check(num_classes: int, in_chans: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes={num_classes!r} must be an integer >= 1 (the box classes)")
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans={in_chans!r} must be 1 or 3")


class TinyEncoder(nn.Module):
    """Double convolutions with max-pool steps: features at strides 4, 8, 16 and 32."""

    def __init__(self, in_chans: int, width: int):
        super().__init__()
        widths = [width, width, width * 2, width * 4, width * 8]
        self.stem = nn.Sequential(double_conv(in_chans, widths[0], stride=2), nn.MaxPool2d(2))  # stride 4
        self.stages = nn.ModuleList(double_conv(widths[i], widths[i + 1]) for i in range(4))
        self.pool = nn.MaxPool2d(2)
        self.channels = widths[1:]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for i, stage in enumerate(self.stages):
            x = stage(x if i == 0 else self.pool(x))
            features.append(x)
        return features


def timm_encoder(arch: str, in_chans: int) -> tuple[nn.Module, list[int]]:
    """A timm backbone giving its feature maps at strides 4, 8, 16 and 32 (``features_only``), and
    their channels. Its weights keep timm's names under ``encoder.``, so a plain backbone file loads
    with ``--pretrained``."""
    import timm

    if not timm.is_model(arch):
        raise ValueError(f"timm has no architecture {arch!r}.{did_you_mean(arch, timm.list_models())}")
    probe = timm.create_model(arch, pretrained=False, features_only=True, in_chans=in_chans)
    reductions = probe.feature_info.reduction()
    if not {4, 8, 16, 32} <= set(reductions):
        raise ValueError(f"backbone {arch!r} gives features at strides {reductions}, not 4, 8, 16 and 32")
    picked = tuple(reductions.index(r) for r in (4, 8, 16, 32))
    body = timm.create_model(arch, pretrained=False, features_only=True, in_chans=in_chans, out_indices=picked)
    return body, list(body.feature_info.channels())


class CenterNet(nn.Module):
    """Encoder -> top-down feature pyramid merged at stride 4 -> heat-map and box-distance heads."""

    def __init__(self, encoder: nn.Module, channels: list[int], num_classes: int, neck: int):
        super().__init__()
        self.encoder = encoder
        self.lateral = nn.ModuleList(nn.Conv2d(c, neck, 1) for c in channels)
        self.smooth = nn.Sequential(
            nn.Conv2d(neck, neck, 3, padding=1, bias=False), nn.BatchNorm2d(neck), nn.ReLU(inplace=True)
        )
        self.heat = self._head(neck, num_classes)
        self.size = self._head(neck, 4)
        nn.init.constant_(self.heat[-1].bias, float(torch.logit(torch.tensor(HEAT_PRIOR))))

    @staticmethod
    def _head(channels: int, out: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(channels, out, 1)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.encoder(x)
        merged = self.lateral[-1](features[-1])
        for lateral, feature in zip(self.lateral[-2::-1], features[-2::-1]):
            merged = lateral(feature) + nn.functional.interpolate(merged, scale_factor=2.0, mode="nearest")
        merged = self.smooth(merged)
        heatmap = torch.sigmoid(self.heat(merged))
        distances = STRIDE * torch.exp(torch.clamp(self.size(merged), max=MAX_LOG_DISTANCE))
        return heatmap, distances


@register_model(
    "tiny_centernet", task="detect", description="small CenterNet box detector, trains from scratch on a CPU"
)
def tiny_centernet(*, num_classes: int, in_chans: int = 3, width: int = 16, neck: int = 32) -> CenterNet:
    """Build the built-in detector.

    Args:
        num_classes: box classes (no background class).
        in_chans: input channels (1 or 3).
        width: channels of the encoder's first stage; doubles at every stage down.
        neck: channels of the feature pyramid and the heads.
    """
    _check(num_classes, in_chans)
    for key, value in (("width", width), ("neck", neck)):
        if not isinstance(value, int) or not 4 <= value <= 512:
            raise ValueError(f"{key}={value!r} must be an integer 4..512")
    encoder = TinyEncoder(in_chans, width)
    return CenterNet(encoder, encoder.channels, num_classes, neck)


@register_model(
    "centernet", task="detect", description="CenterNet box detector over a timm encoder (backbone=resnet18 ...)"
)
def centernet(*, num_classes: int, in_chans: int = 3, backbone: str = "resnet18", neck: int = 128) -> CenterNet:
    """Build a detector over a timm encoder (random init; ``--pretrained FILE`` loads one).

    Args:
        num_classes: box classes (no background class).
        in_chans: input channels (1 or 3).
        backbone: a timm architecture with features at strides 4..32 (resnet18, efficientnet_b0,
            mobilenetv3_large_100, convnext_atto ...).
        neck: channels of the feature pyramid and the heads.
    """
    _check(num_classes, in_chans)
    if not isinstance(neck, int) or not 4 <= neck <= 512:
        raise ValueError(f"neck={neck!r} must be an integer 4..512")
    encoder, channels = timm_encoder(backbone, in_chans)
    return CenterNet(encoder, channels, num_classes, neck)
