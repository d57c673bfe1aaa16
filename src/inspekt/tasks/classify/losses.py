"""Classification and segmentation losses, class weights and the balanced sampler.

Classification losses take logits (N, C) and integer targets (N,); segmentation losses take
per-pixel logits (N, C, H, W) and class maps (N, H, W). The model always has one logit per
class and predicts with a softmax, whichever loss trained it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from inspekt.errors import ConfigError

LOSSES = ("ce", "bce", "focal")
SEGMENT_LOSSES = ("dice_bce", "focal", "tversky")


def class_weights(
    counts: np.ndarray, classes: Sequence[str], spec: str | Mapping[str, float], *, power: float = 1.0
) -> np.ndarray | None:
    """Per-class loss weights.

    Args:
        counts: training examples per class (images for classification, pixels for segmentation).
        classes: class names (index order).
        spec: ``"none"``, ``"auto"`` (inverse frequency to the ``power``, mean 1 over the classes) or
            ``{class: weight}`` (classes not named get 1).
        power: ``auto`` weights are ``(1 / frequency) ** power``; segmentation uses 0.5, because a
            defect covering 0.1 % of the pixels would otherwise weigh 1000 times the background.

    Returns:
        A float32 array of one weight per class, or None for ``"none"``.

    Raises:
        ConfigError: an unknown class name, a weight <= 0, or an unknown spec.
    """
    if spec == "none":
        return None
    if spec == "auto":
        counts = np.asarray(counts, dtype=np.float64)
        weights = np.where(counts > 0, (counts.sum() / (len(classes) * np.maximum(counts, 1))) ** power, 0.0)
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


def make_segment_loss(name: str, weights: np.ndarray | None = None, *, gamma: float = 2.0, beta: float = 0.7):
    """A per-pixel loss ``(logits (N, C, H, W), targets (N, H, W)) -> scalar tensor``.

    Every variant adds a region term over the defect classes (1..C-1), computed over the whole
    batch so that images without defects contribute their false positives without dividing by 0:

    - ``dice_bce``: cross-entropy (binary cross-entropy when there is one defect class) + soft Dice.
    - ``focal``: focal loss (Lin et al. 2017) + soft Dice, for very unbalanced pixels.
    - ``tversky``: cross-entropy + Tversky loss (Salehi et al. 2017) with false negatives weighted by
      ``beta`` and false positives by ``1 - beta``: ``beta > 0.5`` favours recall of small defects.

    Args:
        name: one of ``SEGMENT_LOSSES``.
        weights: optional per-class weights of the pixel term (``class_weights``).
        gamma: focal focusing parameter.
        beta: Tversky false-negative weight in (0, 1).

    Raises:
        ConfigError: an unknown name or ``beta`` outside (0, 1).
    """
    import torch
    import torch.nn.functional as F

    if name not in SEGMENT_LOSSES:
        raise ConfigError(f"loss={name!r} is not a segmentation loss; use one of {', '.join(SEGMENT_LOSSES)}")
    if not 0 < beta < 1:
        raise ConfigError(f"tversky_beta={beta} must lie in (0, 1)")
    w = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    alpha = 0.5 if name != "tversky" else 1 - beta
    fn_weight = 0.5 if name != "tversky" else beta

    def loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        logits = logits.float()
        weight = None if w is None else w.to(logits.device)
        log_p = F.log_softmax(logits, dim=1)
        if name == "focal":
            nll = F.nll_loss(((1 - log_p.exp()).pow(gamma) * log_p), targets, weight=weight)
        else:
            nll = F.nll_loss(log_p, targets, weight=weight)
        probs = log_p.exp()[:, 1:]
        onehot = F.one_hot(targets, logits.shape[1]).permute(0, 3, 1, 2).float()[:, 1:]
        dims = (0, 2, 3)
        tp = (probs * onehot).sum(dims)
        fp = (probs * (1 - onehot)).sum(dims)
        fn = ((1 - probs) * onehot).sum(dims)
        region = 1 - (tp + 1) / (tp + alpha * fp + fn_weight * fn + 1)  # alpha = beta = 0.5 is Dice
        return nll + region.mean()

    return loss
