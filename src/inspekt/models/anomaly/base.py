"""The contract every anomaly method follows, whatever it learns.

An anomaly method is a ``torch.nn.Module`` built by the registry
(``create_model("draem", in_chans=1, input_size=128, **hyper)``) that

* ``fit(data, settings)`` learns from normal images only and returns itself; statistics methods
  (PaDiM, PatchCore) estimate buffers, networks (AE, DRAEM) train with their own loss;
* ``forward(x)`` maps a normalised (N, C, H, W) float32 batch to its outputs, in this order:
  ``anomaly_map`` (N, 1, H, W) at the input resolution and ``score`` (N,), both raw (higher = more
  anomalous, in the method's own units), then ``reconstruction`` (N, C, H, W, in the same normalised
  space as the input) for methods that reconstruct. The whole inference, score included, is in the
  graph, so the ONNX export computes exactly what torch computes;
* ``card_params()`` returns the builder keywords that rebuild the fitted module with buffers of the
  right shapes (e.g. PatchCore's memory-bank size), so that a bundle reloads from
  ``weights.safetensors`` with ``create_model(card.architecture, **card.params)``;
* ``notes()`` returns what a user must know about the model (e.g. "random backbone weights").

Thresholds, score normalisation, post-processing and evaluation are not the method's business:
``inspekt.tasks.anomaly.predict`` does them the same way for every method.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from inspekt.models.loop import LoopResult, Objective, run_loop

# the output names of every anomaly graph, in forward() order (the Predictor reads them by name)
ANOMALY_MAP, SCORE, RECONSTRUCTION = "anomaly_map", "score", "reconstruction"


@dataclass(frozen=True)
class FitData:
    """Normal training images, already prepared by the card (channels, CLAHE, resize).

    Attributes:
        images: (N, H, W, C) uint8, C = 1 or 3, H = W = the input size.
        mean: per-channel mean in [0, 1] of the card's normalisation.
        std: per-channel std of the card's normalisation.
        groups: (N,) int sub-class index of each image (variants / poses), or None when unknown.
        group_names: the name of each sub-class index.
    """

    images: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    groups: np.ndarray | None = None
    group_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.images)

    @property
    def channels(self) -> int:
        return int(self.images.shape[3])

    def normalized(self, index: np.ndarray | slice | None = None) -> torch.Tensor:
        """Model inputs: (N, C, H, W) float32 ``(x / 255 - mean) / std`` of the training images (all,
        or those at ``index``)."""
        chosen = self.images if index is None else self.images[index]
        return to_input(torch.from_numpy(np.ascontiguousarray(chosen)), self.mean, self.std)


def to_input(images: torch.Tensor, mean, std) -> torch.Tensor:
    """(N, H, W, C) uint8 -> normalised (N, C, H, W) float32."""
    x = images.permute(0, 3, 1, 2).float() / 255.0
    mean_t = torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
    return (x - mean_t) / std_t


@dataclass(frozen=True)
class FitSettings:
    """How to fit: None means the method's own default.

    Attributes:
        epochs: passes over the training images (networks).
        batch: images per optimisation step / feature-extraction call.
        lr: learning rate (networks).
        seed: seeds every random choice, so a fit is reproducible.
        device: where to compute.
        amp: mixed precision on CUDA (the one loop ignores it elsewhere).
        log: receives progress rows of one-pass fits (statistics methods send
            ``{"step": "features", "done": i, "total": n}``).
        loop: runs a network's ``Objective`` (``inspekt.models.loop.run_loop``; the trainer gives it its
            run folder's progress, checkpoints and resume): every method that trains by gradient
            descent trains through it.
    """

    epochs: int | None = None
    batch: int | None = None
    lr: float | None = None
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: bool = False
    log: Callable[[dict[str, Any]], None] = lambda row: None
    loop: Callable[[Objective], LoopResult] = run_loop


class AnomalyNet(nn.Module):
    """Base class of anomaly methods (see the module docstring for the contract). Calling a method
    before ``fit`` (or before loading fitted weights) raises instead of returning meaningless scores."""

    has_reconstruction: bool = False

    def __init__(self):
        super().__init__()
        # saved with the weights, so a bundle's rebuilt network knows it was fitted
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))
        self.register_forward_pre_hook(_refuse_unfitted)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "fit" in cls.__dict__:
            cls.fit = _marking_fitted(cls.__dict__["fit"])

    def fit(self, data: FitData, settings: FitSettings) -> AnomalyNet:  # pragma: no cover - abstract
        """Learn from normal images; returns self."""
        raise NotImplementedError

    def card_params(self) -> dict[str, Any]:  # pragma: no cover - abstract
        """Builder keywords that rebuild this fitted module (buffer shapes included)."""
        raise NotImplementedError

    def notes(self) -> list[str]:
        """What a user must know about this model (shown at training time and stored in the card)."""
        return []

    @property
    def outputs(self) -> tuple[str, ...]:
        """Names of ``forward``'s outputs, in order (the ONNX graph's output names)."""
        return (ANOMALY_MAP, SCORE, RECONSTRUCTION) if self.has_reconstruction else (ANOMALY_MAP, SCORE)


def _refuse_unfitted(module: AnomalyNet, inputs) -> None:
    if not torch.jit.is_tracing() and not bool(module.fitted):
        raise RuntimeError(
            f"{type(module).__name__} is not fitted: call fit(data, settings) first, or load a "
            "trained bundle (inspekt.load_model)"
        )


def _marking_fitted(fit):
    """Wrap a method's ``fit`` so that a successful fit marks the module as fitted."""

    @functools.wraps(fit)
    def wrapper(self, *args, **kwargs):
        result = fit(self, *args, **kwargs)
        self.fitted.fill_(True)
        return result

    return wrapper


def top_k_mean(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean of the largest ``fraction`` of each row's values ((N, P) -> (N,)); fraction 0 = the max.
    A robust image score from an anomaly map: one hot pixel does not decide alone."""
    if fraction <= 0:
        return values.amax(dim=1)
    k = max(1, int(values.shape[1] * fraction + 0.5))  # int(), not round(): the shape is a tensor while exporting
    return values.topk(k, dim=1).values.mean(dim=1)


def gaussian_kernel(sigma: float, channels: int = 1) -> torch.Tensor:
    """A normalised 2-D Gaussian (channels, 1, k, k) kernel, k = 2 * ceil(3 sigma) + 1, for depthwise
    ``conv2d`` smoothing inside a graph."""
    radius = max(1, int(np.ceil(3 * sigma)))
    ax = torch.arange(-radius, radius + 1, dtype=torch.float32)
    g = torch.exp(-(ax**2) / (2 * sigma**2))
    kernel = torch.outer(g, g)
    kernel = kernel / kernel.sum()
    return kernel.expand(channels, 1, -1, -1).contiguous()


def smooth(maps: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Depthwise Gaussian smoothing of (N, C, H, W) maps with reflect padding (exports to ONNX)."""
    pad = kernel.shape[-1] // 2
    padded = nn.functional.pad(maps, (pad, pad, pad, pad), mode="reflect")
    return nn.functional.conv2d(padded, kernel, groups=maps.shape[1])


def check_common(in_chans: int, input_size: int) -> None:
    """Validate the two keywords every anomaly builder takes."""
    if in_chans not in (1, 3):
        raise ValueError(f"in_chans={in_chans!r} must be 1 or 3")
    if not isinstance(input_size, int) or not 32 <= input_size <= 1024 or input_size % 32:
        raise ValueError(f"input_size={input_size!r} must be a multiple of 32 between 32 and 1024")
