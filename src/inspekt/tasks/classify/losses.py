"""Classification and segmentation losses, class weights and the balanced sampler.

Classification losses take logits (N, C) and integer targets (N,); segmentation losses take
per-pixel logits (N, C, H, W) and class maps (N, H, W). The model always has one logit per
class and predicts with a softmax, whichever loss trained it.
"""

from __future__ import annotations

import numpy as np

from inspekt.errors import ConfigError

LOSSES = ("ce", "bce", "focal")


def make_loss(name: str, weights: np.ndarray | None = None, *, gamma: float = 2.0, label_smoothing: float = 0.0):
    """A loss function ``(logits, targets) -> scalar tensor``.

    Args:
        name: ``ce`` (softmax cross-entropy), ``bce`` (one-vs-rest binary cross-entropy on one logit
            per class) or ``focal`` (softmax focal loss, Lin et al. 2017).
        weights: optional per-class weights (``class_weights``).
        gamma: focal-loss focusing parameter (0 gives cross-entropy).
        label_smoothing: for ``ce``/``focal``/``bce`` targets, in [0, 1).

    Raises:
        ConfigError: unknown loss name.
    """
    import torch
    import torch.nn.functional as F

    if name not in LOSSES:
        raise ConfigError(f"loss={name!r} is not one of {', '.join(LOSSES)}")
    w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)

    def ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        weight = None if w is None else w.to(logits.device)
        return F.cross_entropy(logits.float(), targets, weight=weight, label_smoothing=label_smoothing)

    def bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        n_classes = logits.shape[1]
        onehot = F.one_hot(targets, n_classes).float()
        onehot = onehot * (1 - label_smoothing) + label_smoothing / n_classes
        per_element = F.binary_cross_entropy_with_logits(logits.float(), onehot, reduction="none")
        if w is not None:
            per_element = per_element * w.to(logits.device)[targets][:, None]
        return per_element.sum(1).mean()

    def focal(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_p = F.log_softmax(logits.float(), dim=1)
        n_classes = logits.shape[1]
        soft = F.one_hot(targets, n_classes).float() * (1 - label_smoothing) + label_smoothing / n_classes
        modulator = (1 - log_p.exp()).pow(gamma)
        per_sample = -(soft * modulator * log_p).sum(1)
        if w is None:
            return per_sample.mean()
        sample_w = w.to(logits.device)[targets]
        return (per_sample * sample_w).sum() / sample_w.sum()

    return {"ce": ce, "bce": bce, "focal": focal}[name]
