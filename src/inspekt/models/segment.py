"""Segmentation networks: a small built-in UNet, and the UNet family of segmentation-models-pytorch
over its named encoders (always built without downloading weights; ``--pretrained FILE`` loads a
local encoder or whole-model file).

Every network maps (N, C_in, H, W) to per-pixel logits (N, num_classes, H, W), class 0 being
background; H and W must be multiples of 32.
"""

from __future__ import annotations

import torch
from torch import nn

from inspekt.errors import did_you_mean
from inspekt.models.layers import double_conv
from inspekt.models.registry import register_model

SMP_ARCHITECTURES = {
    "unet": ("Unet", "UNet (Ronneberger et al. 2015)"),
    "unetplusplus": ("UnetPlusPlus", "UNet++ with nested skip connections"),
    "fpn": ("FPN", "feature pyramid network, light decoder"),
    "deeplabv3plus": ("DeepLabV3Plus", "DeepLabV3+ with atrous spatial pyramid pooling"),
    "linknet": ("Linknet", "LinkNet, additive skips, fast"),
}


def _check(num_classes: int, in_chans: int) -> None:
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} must be an integer >= 2 (background and at least one class)")
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans={in_chans!r} must be 1 or 3")


class TinyUNet(nn.Module):
    """A UNet: double convolutions, max-pool down, bilinear up, skip concatenation. With
    ``stem_stride=2`` the first convolution is strided and the logits are upsampled at the end:
    about 3x cheaper, at the cost of detail finer than 2 pixels. Weights and activations are kept
    channels-last, which makes the convolutions about 20 % faster on CPUs."""

    def __init__(self, *, num_classes: int, in_chans: int, width: int, depth: int, stem_stride: int = 1):
        super().__init__()
        self.stem_stride = stem_stride
        widths = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList(double_conv(c_in, c_out) for c_in, c_out in zip([in_chans] + widths[:-1], widths))
        self.up = nn.ModuleList(double_conv(widths[i] + widths[i + 1], widths[i]) for i in reversed(range(depth)))
        self.pool = nn.MaxPool2d(2)
        self.head = nn.Conv2d(widths[0], num_classes, 1)
        if stem_stride == 2:
            self.stem = nn.Sequential(
                nn.Conv2d(in_chans, widths[0], 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(widths[0]),
                nn.ReLU(inplace=True),
            )
            self.down[0] = double_conv(widths[0], widths[0])
        self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        if self.stem_stride == 2:
            x = self.stem(x)
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            x = nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
            x = block(torch.cat([x, skips.pop()], dim=1))
        x = self.head(x)
        if self.stem_stride == 2:
            x = nn.functional.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return x


@register_model("tiny_unet", task="segment", description="small UNet, trains from scratch in minutes on a CPU")
def tiny_unet(
    *, num_classes: int, in_chans: int = 3, width: int = 16, depth: int = 4, stem_stride: int = 1
) -> TinyUNet:
    """Build the built-in UNet.

    Args:
        num_classes: output classes, background included.
        in_chans: input channels (1 or 3).
        width: channels of the first level; doubles at every level down.
        depth: number of down-sampling steps (1..5); inputs must be multiples of 2**depth.
        stem_stride: 1, or 2 for a strided first convolution (about 3x cheaper on large inputs).
    """
    _check(num_classes, in_chans)
    if not isinstance(width, int) or not 2 <= width <= 256:
        raise ValueError(f"width={width!r} must be an integer 2..256")
    if depth not in range(1, 6):
        raise ValueError(f"depth={depth!r} must be 1..5")
    if stem_stride not in (1, 2):
        raise ValueError(f"stem_stride={stem_stride!r} must be 1 or 2")
    return TinyUNet(num_classes=num_classes, in_chans=in_chans, width=width, depth=depth, stem_stride=stem_stride)


def _smp_builder(name: str, cls_name: str, description: str):
    def build(*, num_classes: int, in_chans: int = 3, encoder: str = "resnet18"):
        _check(num_classes, in_chans)
        import segmentation_models_pytorch as smp

        known = smp.encoders.get_encoder_names()
        if encoder not in known and not encoder.startswith("tu-"):
            raise ValueError(
                f"unknown encoder {encoder!r}.{did_you_mean(encoder, known)} Encoders: "
                f"{', '.join(known[:12])}, ... or tu-<timm name>"
            )
        return getattr(smp, cls_name)(
            encoder_name=encoder, encoder_weights=None, in_channels=in_chans, classes=num_classes
        )

    build.__doc__ = f"""{description} over a named encoder (segmentation-models-pytorch), random init.

    Args:
        num_classes: output classes, background included.
        in_chans: input channels (1 or 3).
        encoder: encoder name (resnet18, resnet34, efficientnet-b0, mobilenet_v2, ... or tu-<timm name>).
    """
    register_model(name, task="segment", description=f"{description} (smp; encoder=resnet18 ...)")(build)


for _name, (_cls, _description) in SMP_ARCHITECTURES.items():
    _smp_builder(_name, _cls, _description)
