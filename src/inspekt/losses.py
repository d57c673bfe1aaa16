"""Classification losses, class weights and the balanced sampler.

Every loss takes logits (N, C) and integer targets (N,); the model always has one logit per
class and predicts with a softmax, whichever loss trained it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from .errors import ConfigError

LOSSES = ("ce", "bce", "focal")


def class_weights(labels: np.ndarray, classes: Sequence[str], spec: str | Mapping[str, float]) -> np.ndarray | None:
    """Per-class loss weights.

    Args:
        labels: integer training labels.
        classes: class names (index order).
        spec: ``"none"``, ``"auto"`` (inverse frequency, mean 1 over the classes) or ``{class: weight}``
            (classes not named get 1).

    Returns:
        A float32 array of one weight per class, or None for ``"none"``.

    Raises:
        ConfigError: an unknown class name, a weight <= 0, or an unknown spec.
    """
    if spec == "none":
        return None
    if spec == "auto":
        counts = np.bincount(labels, minlength=len(classes)).astype(np.float64)
        weights = np.where(counts > 0, len(labels) / (len(classes) * np.maximum(counts, 1)), 0.0)
        return (weights / weights[counts > 0].mean()).astype(np.float32)
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(classes))
        if unknown:
            raise ConfigError(f"class_weights names unknown class(es) {unknown}; the classes are {list(classes)}")
        bad = {k: v for k, v in spec.items() if not isinstance(v, (int, float)) or v <= 0}
        if bad:
            raise ConfigError(f"class_weights values must be numbers > 0, got {bad}")
        return np.array([float(spec.get(c, 1.0)) for c in classes], dtype=np.float32)
    raise ConfigError(f"class_weights={spec!r}: use none, auto or a mapping {{class: weight}}")


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


def epoch_order(labels: np.ndarray, rng: np.random.Generator, *, balanced: bool) -> np.ndarray:
    """Sample indices for one epoch: a permutation, or (``balanced``) a draw with replacement in
    which every class is equally likely, so rare classes are oversampled.

    Args:
        labels: integer training labels.
        rng: the epoch's generator (seeded per epoch for exact resume).
        balanced: oversample rare classes.

    Returns:
        ``len(labels)`` indices.
    """
    if not balanced:
        return rng.permutation(len(labels))
    counts = np.bincount(labels)
    p = 1.0 / counts[labels]
    return rng.choice(len(labels), size=len(labels), replace=True, p=p / p.sum())
