"""The penultimate features of a classifier, exported beside its logits.

Every classification bundle's ``model.onnx`` has a second output, ``embedding``: the input of the
classifier head (pooled features, one vector per image). Drift checks compare these between
reference and incoming images (what the model "sees"), through the same graph that predicts.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


def split_head(network: nn.Module) -> tuple[Callable[[torch.Tensor], torch.Tensor], nn.Module] | None:
    """``(pre_logits, classifier)`` with ``classifier(pre_logits(x)) == network(x)``, or None when the
    network has no recognised head (then no embedding is exported)."""
    if hasattr(network, "forward_features") and hasattr(network, "forward_head"):  # timm
        return (lambda x: network.forward_head(network.forward_features(x), pre_logits=True)), network.get_classifier()
    if callable(getattr(network, "pre_logits", None)) and hasattr(network, "head"):  # the built-in tiny_cnn
        return network.pre_logits, network.head
    return None


class WithEmbedding(nn.Module):
    """Wraps a classifier: ``forward(x) -> (logits, embedding)``; the weights stay the network's own."""

    def __init__(self, network: nn.Module):
        super().__init__()
        parts = split_head(network)
        if parts is None:
            raise ValueError(f"{type(network).__name__} has no recognised classifier head")
        self.network = network
        self._pre_logits, self._classifier = parts

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self._pre_logits(x).flatten(1)
        return self._classifier(features), features


def with_embedding(network: nn.Module, check: torch.Tensor | None = None) -> WithEmbedding | None:
    """The wrapped network, or None when it has no recognised head or (checked on ``check``, an
    NCHW batch) the split head does not reproduce the network's own logits."""
    if split_head(network) is None:
        return None
    wrapped = WithEmbedding(network).eval()
    if check is not None:
        with torch.no_grad():
            if not torch.allclose(wrapped(check)[0], network.eval()(check), atol=1e-5):
                return None
    return wrapped
