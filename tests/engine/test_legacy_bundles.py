"""Bundles written before the package-layout refactor keep loading and predicting the same.

The fixtures in ``tests/data/legacy/`` were written by commit 5736bbe (main before the refactor) with
``tests/data/legacy/make_legacy.py``: one tiny bundle per task (classify: tiny_cnn, segment: tiny_unet,
anomaly: ae_ssim; card.json, weights.safetensors, model.onnx, reference.json), four probe images per task,
and ``expected.json``, the old code's ONNX predictions on the probes. Loading them with the current code, with
both backends, and getting the same predictions proves that old bundles keep loading. Never regenerate them
with a newer inspekt (that would only compare the code with itself); see make_legacy.py for how they were made.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import inspekt
from inspekt.bundle import open_bundle

LEGACY = Path(__file__).resolve().parents[1] / "data" / "legacy"
EXPECTED = json.loads((LEGACY / "expected.json").read_text(encoding="utf-8"))
TASKS = ("classify", "segment", "anomaly")
ARCHITECTURES = {"classify": "tiny_cnn", "segment": "tiny_unet", "anomaly": "ae_ssim"}
# Scores, probabilities and map means are in 0..1 (raw anomaly scores ~0.5..0.8): an absolute tolerance. The old
# code's ONNX and torch backends agreed to ~1e-6 on these probes, so 1e-4 is far above float noise.
TOL = 1e-4


def _probes(task: str) -> list[Path]:
    paths = sorted((LEGACY / "probes" / task).glob("*.png"))
    assert [p.name for p in paths] == sorted(EXPECTED[task]), "probe images and expected.json disagree"
    return paths


def test_fixtures_were_written_by_the_pre_refactor_commit():
    assert EXPECTED["_written_by"]["commit"] == "5736bbe"
    assert set(EXPECTED) == {*TASKS, "_written_by"}


@pytest.mark.parametrize("task", TASKS)
def test_legacy_bundle_opens(task):
    bundle = open_bundle(LEGACY / task)
    assert bundle.card.task == task
    assert bundle.card.architecture == ARCHITECTURES[task]
    for name in ("card.json", "weights.safetensors", "model.onnx"):
        assert bundle.has(name), name
    # An opened Bundle is accepted by Predictor.load as well as a path.
    predictor = inspekt.Predictor.load(bundle)
    predictions = predictor.predict([str(p) for p in _probes(task)])
    assert [p.label for p in predictions] == [EXPECTED[task][p.name]["label"] for p in _probes(task)]


@pytest.mark.parametrize("backend", ["onnx", "torch"])
@pytest.mark.parametrize("task", TASKS)
def test_legacy_bundle_predicts_as_before(task, backend):
    predictor = inspekt.load_model(LEGACY / task, backend=backend)
    paths = _probes(task)
    predictions = predictor.predict([str(p) for p in paths])
    assert len(predictions) == len(paths)
    for path, prediction in zip(paths, predictions):
        expected = EXPECTED[task][path.name]
        where = f"{task}/{backend}/{path.name}"
        assert prediction.task == task, where
        assert prediction.label == expected["label"], where
        assert prediction.score == pytest.approx(expected["score"], abs=TOL), where
        if task == "classify":
            assert prediction.scores == pytest.approx(expected["scores"], abs=TOL), where
            continue
        assert list(prediction.mask.shape) == expected["mask_shape"], where
        # Exact pixel counts: on these probes no map value lies within 4e-4 of its threshold (the old code's two
        # backends differed by ~1e-6), so there is no float tie that could move a pixel across it.
        assert int(np.count_nonzero(prediction.mask)) == expected["mask_nonzero"], where
        heatmap_mean = float(np.asarray(prediction.heatmap, np.float64).mean())
        assert heatmap_mean == pytest.approx(expected["heatmap_mean"], abs=TOL), where
        if task == "anomaly":
            assert prediction.extra["raw_score"] == pytest.approx(expected["raw_score"], abs=TOL), where
