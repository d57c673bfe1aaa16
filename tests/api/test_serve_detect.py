"""``inspekt serve`` with a detection model, over a real HTTP server: the boxes of planted squares come
back in the response (class, score, box, area), counted per class, and the score threshold is a
form field."""

from __future__ import annotations

import httpx
import numpy as np
import pytest

from conftest import uvicorn_thread
from inspekt.api import ServeSettings, create_app
from inspekt.bundle import model_version, open_bundle
from inspekt.tasks.detect.boxes import iou_matrix

PREDICT = "/v1/models/det/predict"


@pytest.mark.slow
def test_served_boxes_are_the_planted_ones(detect_trained, planted_boxes):
    root, truth = planted_boxes
    names = [name for name in sorted(truth) if truth[name]][:6]
    files = [("files", (n, (root / "images" / n).read_bytes(), "image/png")) for n in names]
    app = create_app(ServeSettings(models=(f"det={detect_trained.bundle}",)))
    with uvicorn_thread(app) as url:
        card = httpx.get(f"{url}/v1/models/det", timeout=60).json()
        assert card["task"] == "detect" and card["classes"] == ["defect"]
        post = open_bundle(detect_trained.bundle).card.postprocess
        assert card["postprocess"]["threshold"] == post.threshold  # the score threshold boxes are judged at
        body = httpx.post(url + PREDICT, files=files, timeout=120).json()
        version = model_version(open_bundle(detect_trained.bundle))  # name@ the graph's hash, as predict --json says
        assert card["version"] == body["model_version"] == version and body["model"] == "det"
        strict = httpx.post(url + PREDICT, files=files, data={"threshold": "1.0"}, timeout=120).json()
    placed = 0
    for name, served in zip(names, body["predictions"]):
        assert served["path"] == name and served["task"] == "detect"
        assert served["counts"]["defect"] == len(served["boxes"])
        assert all({"class", "score", "box", "area_px"} <= set(box) for box in served["boxes"])
        if served["boxes"]:
            overlap = iou_matrix(np.array(truth[name], float), np.array([b["box"] for b in served["boxes"]]))
            placed += int((overlap.max(axis=1) >= 0.5).sum())
    assert placed >= 0.8 * sum(len(truth[n]) for n in names)  # most planted squares found in the right place
    assert all(p["boxes"] == [] and p["verdict"] == "ok" for p in strict["predictions"])  # no box scores 1.0
