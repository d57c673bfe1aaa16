"""Segmentation losses: dice + cross-entropy, focal or Tversky over the pixels (class 0 background)."""

from __future__ import annotations

import numpy as np

from inspekt.errors import ConfigError

SEGMENT_LOSSES = ("dice_bce", "focal", "tversky")


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
