"""timm backbones as classifiers, by name, always built from scratch.

Weights never download here: a bundle reloads from its own ``weights.safetensors``, and
training loads published or local weights explicitly (``models.pretrained``). Curated names
are listed by ``inspekt models``; any other timm architecture is available as ``timm/<name>``.
"""

from __future__ import annotations

from typing import Any

from inspekt.errors import ConfigError, did_you_mean
from inspekt.models.registry import ModelEntry, register_model, register_resolver

CURATED = {
    "resnet18": "ResNet-18 (11 M parameters), a solid transfer-learning baseline",
    "resnet34": "ResNet-34 (21 M parameters)",
    "resnet50": "ResNet-50 (24 M parameters)",
    "efficientnet_b0": "EfficientNet-B0 (4 M parameters)",
    "mobilenetv3_small_100": "MobileNetV3-Small (1.5 M parameters), fast on CPUs",
    "mobilenetv3_large_100": "MobileNetV3-Large (4 M parameters)",
    "convnext_atto": "ConvNeXt-Atto (3.4 M parameters)",
    "regnety_002": "RegNetY-200MF (2.8 M parameters), fast on CPUs",
}


def timm_builder(arch: str):
    """A registry builder for the timm architecture ``arch``."""

    def build(*, num_classes: int, in_chans: int = 3, drop_rate: float = 0.0) -> Any:
        import timm

        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes={num_classes!r} must be an integer >= 2")
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans={in_chans!r} must be 1 or 3")
        if not isinstance(drop_rate, (int, float)) or not 0 <= drop_rate < 1:
            raise ValueError(f"drop_rate={drop_rate!r} must lie in [0, 1)")
        return timm.create_model(
            arch, pretrained=False, num_classes=num_classes, in_chans=in_chans, drop_rate=float(drop_rate)
        )

    build.__doc__ = f"timm {arch}: num_classes, in_chans (1 or 3), drop_rate before the classifier."
    return build


for _name, _description in CURATED.items():
    register_model(_name, task="classify", description=_description)(timm_builder(_name))


def timm_entry(name: str) -> ModelEntry:
    """``timm/<arch>``: any timm classification architecture, registered on first use."""
    import timm

    arch = name.removeprefix("timm/")
    if not timm.is_model(arch):
        raise ConfigError(
            f"timm has no architecture {arch!r}.{did_you_mean(arch, timm.list_models())} "
            "See timm.list_models() for the names"
        )
    return ModelEntry(name, "classify", timm_builder(arch), f"timm {arch}")


register_resolver("timm/", timm_entry)
