"""The torchvision workaround: timm imports and runs; the fallback nms is correct."""

import subprocess
import sys

import pytest
import torch

from inspekt import _compat


@pytest.mark.slow
def test_timm_resnet18_forward_pass():
    _compat.apply()
    import timm

    model = timm.create_model("resnet18", pretrained=False, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 64, 64))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


@pytest.mark.slow
def test_active_exactly_when_torchvision_cannot_import_on_its_own():
    plain = subprocess.run([sys.executable, "-c", "import torchvision"], capture_output=True, text=True)
    needed = plain.returncode != 0
    if needed:
        assert "torchvision::nms does not exist" in plain.stderr
    assert _compat.apply() is needed
    assert _compat.apply() is needed  # a second call must not redefine the operators (that would raise)


def test_torchvision_imports_after_apply():
    _compat.apply()
    import torchvision  # noqa: F401  (raised "operator torchvision::nms does not exist" before)


def _brute_force_nms(boxes, scores, threshold):
    keep = []
    for i in sorted(range(len(scores)), key=lambda i: -float(scores[i])):

        def iou(a, b):
            x1, y1 = max(a[0], b[0]), max(a[1], b[1])
            x2, y2 = min(a[2], b[2]), min(a[3], b[3])
            inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
            area = lambda r: (r[2] - r[0]) * (r[3] - r[1])  # noqa: E731
            return inter / (area(a) + area(b) - inter)

        if all(iou(boxes[i].tolist(), boxes[k].tolist()) <= threshold for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_nms_matches_brute_force(seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(40, 2, generator=g) * 50
    boxes = torch.cat([xy, xy + 5 + torch.rand(40, 2, generator=g) * 20], dim=1)
    scores = torch.rand(40, generator=g)
    kept = _compat.nms_reference(boxes, scores, 0.4).tolist()
    assert kept == _brute_force_nms(boxes, scores, 0.4)


def test_registered_op_uses_fallback_when_active():
    if not _compat.apply():
        pytest.skip("torchvision's compiled ops load here; the workaround is not needed")
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60.0]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    assert torch.ops.torchvision.nms(boxes, scores, 0.5).tolist() == [0, 2]
