"""Frozen timm backbones as multi-scale feature extractors for the feature-statistics anomaly methods
(PaDiM, PatchCore).

The backbone is built with ``features_only=True`` and never downloads anything: its weights are random
(built from a fixed seed, so two builds agree) unless ``weights=FILE`` names a local pretrained file.
Feature-statistics methods learn nothing themselves, so pretrained weights matter far more for them
than for the networks that train; ``notes()`` says so to the user.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from torch import nn

from inspekt.models.anomaly.base import FitData, FitSettings

BUILD_SEED = 0  # random backbone weights are the same on every build, hence every fit is reproducible
TORCH_SUFFIXES = (".pth", ".pt", ".bin")
WRAPPER_KEYS = ("state_dict", "model", "model_state")
OPTIONAL_SUFFIX = "num_batches_tracked"


def map_sigma(sigma: float | None, input_size: int) -> float:
    """The Gaussian smoothing of a feature method's anomaly map, in pixels: ``sigma``, or 4 px at 256 px
    scaled with the input size (the papers' setting).

    Raises:
        ValueError: a sigma outside (0, 64].
    """
    sigma = 4.0 * input_size / 256 if sigma is None else sigma
    if not isinstance(sigma, (int, float)) or not 0 < sigma <= 64:
        raise ValueError(f"sigma={sigma!r} must lie in (0, 64] pixels")
    return float(sigma)


class FeatureExtractor(nn.Module):
    """A frozen timm backbone returning the feature maps of chosen levels.

    Args:
        backbone: timm architecture name (e.g. ``resnet18``, ``wide_resnet50_2``, ``efficientnet_b0``).
        in_chans: input channels (1 or 3).
        layers: feature levels to return, as timm's ``out_indices`` (0 = stem, 1 = stride 4, ...).
        weights: optional local ``.safetensors`` or ``.pth`` state dict of this backbone.
        zero_init_last: timm's default random initialisation of residual blocks, whose last norm is zeroed
            (the block starts as the identity); False keeps the residual branches random too. Only matters
            without ``weights``: which random features suit a method is measured, not derived.

    Raises:
        ValueError: unknown architecture, unavailable levels, or a weights file that does not fit.
    """

    def __init__(
        self,
        *,
        backbone: str,
        in_chans: int,
        layers: Sequence[int],
        weights: str | None = None,
        zero_init_last: bool = True,
    ):
        super().__init__()
        self.backbone = backbone
        self.net = _create(backbone, in_chans, tuple(layers), zero_init_last)
        self.net.requires_grad_(False)
        self.channels = tuple(self.net.feature_info.channels())
        self.strides = tuple(self.net.feature_info.reduction())
        # persistent, so that a reloaded model still knows whether its backbone was pretrained
        self.register_buffer("pretrained", torch.zeros(1, dtype=torch.uint8))
        self.weights_name = None
        if weights is not None:
            _load_weights(self.net, Path(weights), backbone)
            self.pretrained.fill_(1)
            self.weights_name = Path(weights).name
        self.train(False)

    def train(self, mode: bool = True) -> FeatureExtractor:
        """Stay in evaluation mode whatever is asked: batch statistics would change the features
        between fitting and inference."""
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.net(x)

    def notes(self) -> list[str]:
        """User-facing caveats about the backbone's weights."""
        if not int(self.pretrained):
            return [
                f"backbone {self.backbone} has random weights (no pretrained file given): feature-statistics "
                "methods are much weaker without pretrained weights; pass weights=FILE"
            ]
        source = f"from {self.weights_name}" if self.weights_name else "from a local file"
        return [f"backbone {self.backbone} uses pretrained weights {source}"]


def _create(backbone: str, in_chans: int, layers: tuple[int, ...], zero_init_last: bool) -> nn.Module:
    """Build the timm feature backbone with seeded random weights."""
    import timm

    if not isinstance(backbone, str) or not timm.is_model(backbone):
        raise ValueError(f"backbone={backbone!r} is not a timm architecture (e.g. resnet18, wide_resnet50_2)")
    if not layers or any(not isinstance(i, int) or i < 0 for i in layers) or list(layers) != sorted(set(layers)):
        raise ValueError(f"layers={list(layers)!r} must be increasing feature levels >= 0, e.g. [1, 2, 3]")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(BUILD_SEED)
        options = {"pretrained": False, "features_only": True, "in_chans": in_chans, "out_indices": layers}
        try:
            try:
                return timm.create_model(backbone, zero_init_last=zero_init_last, **options)
            except TypeError:  # an architecture without residual blocks to initialise
                return timm.create_model(backbone, **options)
        except (AssertionError, IndexError, ValueError, RuntimeError) as exc:
            raise ValueError(f"backbone {backbone} cannot return layers={list(layers)!r} ({exc})") from exc


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    """Tensors of a local weights file (never executes pickled code)."""
    if not path.is_file():
        raise ValueError(f"weights={os.fspath(path)!r}: no such file; give a .safetensors or .pth state dict")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(os.fspath(path))
    if path.suffix not in TORCH_SUFFIXES:
        raise ValueError(
            f"weights={path.name!r}: unknown format {path.suffix!r}; use .safetensors or {', '.join(TORCH_SUFFIXES)}"
        )
    state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)
    for key in WRAPPER_KEYS:  # training checkpoints often wrap the state dict
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ValueError(f"weights={path.name!r}: expected a mapping of tensor names to tensors")
    return state


def _load_weights(net: nn.Module, path: Path, backbone: str) -> None:
    """Load ``path`` into ``net`` by tensor name; an RGB stem is summed for a grey input.

    Raises:
        ValueError: naming the missing, unexpected and mismatched tensors when the file does not fit.
    """
    state = _read_state(path)
    own = net.state_dict()
    fitted, missing, mismatched = {}, [], []
    for name, target in own.items():
        tensor = state.get(name)
        if tensor is None and name.endswith(OPTIONAL_SUFFIX):
            fitted[name] = target  # a batch-norm counter many published files leave out
        elif tensor is None:
            missing.append(name)
        elif tensor.shape == target.shape:
            fitted[name] = tensor
        elif tensor.ndim == 4 and tensor.shape[0] == target.shape[0] and target.shape[1] == 1:
            fitted[name] = tensor.sum(dim=1, keepdim=True)  # grey input sees the sum of the RGB filters
        else:
            mismatched.append(f"{name} {tuple(tensor.shape)} != {tuple(target.shape)}")
    if missing or mismatched:
        unexpected = [name for name in state if name not in own]
        found = [
            f"{len(names)} {kind} ({', '.join(names[:4])}{', ...' if len(names) > 4 else ''})"
            for kind, names in (("missing", missing), ("mismatched", mismatched), ("unexpected", unexpected))
            if names
        ]
        raise ValueError(
            f"weights={path.name!r} does not fit backbone {backbone}: {'; '.join(found)}; "
            "use the timm state dict of the same architecture"
        )
    net.load_state_dict(fitted, strict=True)


def training_batches(data: FitData, settings: FitSettings, default_batch: int) -> Iterator[torch.Tensor]:
    """Normalised training images in batches on ``settings.device``, logging extraction progress.

    Args:
        data: the training images.
        settings: batch size (None: ``default_batch``), device and progress log.
        default_batch: images per batch when ``settings.batch`` is None.

    Returns:
        An iterator of (B, C, H, W) float32 batches.
    """
    batch = settings.batch or default_batch
    total = len(data)
    for start in range(0, total, batch):
        yield data.normalized(slice(start, start + batch)).to(settings.device)
        settings.log({"step": "features", "done": min(start + batch, total), "total": total})
