"""Environment workarounds, imported before anything that imports torchvision. Nothing else.

torchvision 0.28.0 (the only release pinned to torch 2.13) ships a CUDA-linked ``_C.so``.
With the CPU torch wheel that library fails to load, after which torchvision's meta
registrations call ``torch.library.register_fake("torchvision::nms")`` on an operator that
was never defined, and ``import torchvision`` (hence ``import timm``) raises
``RuntimeError: operator torchvision::nms does not exist``. When that happens we define the
two schemas it registers fakes for and give ``nms`` a plain-PyTorch CPU kernel. Where the
compiled ops load (any normal install), this module does nothing.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

# albumentations checks online for a newer release at import; an offline user must not wait.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

_SCHEMAS = {
    "nms": "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms": "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
}
_library = None  # keeps the fallback definitions alive for the life of the process
TORCHVISION_WORKAROUND_ACTIVE = False


def _torchvision_ops_library() -> Path | None:
    """Path of torchvision's compiled ops, found without importing torchvision."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return None
    candidates = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd"))
    return candidates[0] if candidates else None


def nms_reference(boxes, scores, iou_threshold: float):
    """Greedy non-maximum suppression in plain PyTorch (the fallback ``torchvision::nms``).

    Args:
        boxes: (N, 4) tensor of x1, y1, x2, y2.
        scores: (N,) tensor.
        iou_threshold: boxes overlapping a kept box by more than this are dropped.

    Returns:
        int64 indices of the kept boxes, by decreasing score.
    """
    import torch

    order = torch.argsort(scores, descending=True)
    boxes = boxes[order].float()
    areas = (boxes[:, 2] - boxes[:, 0]).clamp(min=0) * (boxes[:, 3] - boxes[:, 1]).clamp(min=0)
    top_left = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    bottom_right = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (bottom_right - top_left).clamp(min=0).prod(dim=2)
    iou = inter / (areas[:, None] + areas[None, :] - inter).clamp(min=1e-12)
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > iou_threshold
    return order[torch.tensor(keep, dtype=torch.long)]


def _define_missing_ops() -> None:
    global _library, TORCHVISION_WORKAROUND_ACTIVE
    import torch

    _library = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS.values():
        _library.define(schema)
    _library.impl("nms", nms_reference, "CPU")
    TORCHVISION_WORKAROUND_ACTIVE = True


def apply() -> bool:
    """Install the torchvision fallback when its compiled ops cannot load; idempotent.

    Returns:
        True when the workaround is active in this process.
    """
    if TORCHVISION_WORKAROUND_ACTIVE:
        return True
    library = _torchvision_ops_library()
    if library is None:
        return False  # torchvision not installed: nothing imports it, nothing to fix
    import torch

    try:
        torch.ops.load_library(str(library))
    except (OSError, RuntimeError):
        _define_missing_ops()
    return TORCHVISION_WORKAROUND_ACTIVE
