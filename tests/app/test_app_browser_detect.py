"""The workbench with a detection model, in Debian's headless Chromium: Inspect draws the boxes of
planted squares and counts them, its downloaded log holds boxes placed on the squares (IoU), the
score-threshold slider removes them; Batch counts boxes per class and Evaluate shows mAP."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import CHROMIUM_ARGS, running_app
from inspekt.tasks.detect.boxes import iou_matrix

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("streamlit")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "app"
WAIT_MS = 120_000


@pytest.fixture(scope="module")
def server(detect_trained, planted_boxes, tmp_path_factory):
    root = tmp_path_factory.mktemp("detect-ws")
    data, truth = planted_boxes
    shutil.copytree(detect_trained.bundle, root / "models" / "detector")
    incoming = root / "data" / "incoming"
    incoming.mkdir(parents=True)
    for name in sorted(truth)[:6]:
        shutil.copy(data / "images" / name, incoming / name)
    with running_app(root, wait_s=90) as (url, process):
        yield url, root


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        tab = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True).new_page()
        tab.set_default_timeout(WAIT_MS)
        yield tab
        browser.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.slow
def test_inspect_draws_counts_and_places_boxes_and_the_slider_removes_them(server, page, planted_boxes):
    url, _ = server
    data, truth = planted_boxes
    name = next(n for n in sorted(truth) if len(truth[n]) >= 2)
    page.goto(url)
    page.get_by_role("heading", name="Inspect").wait_for()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Images (drag and drop")
    uploader.locator("input[type=file]").set_input_files(str(data / "images" / name))
    verdict = page.locator("h3").filter(has_text=" · ").first
    verdict.wait_for()
    assert verdict.inner_text().startswith("defect · ")
    page.get_by_text("prediction (boxes drawn)").wait_for()
    page.get_by_test_id("stDataFrame").first.wait_for()  # the count table
    _shot(page, "detect-1-inspect")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download JSON log").click()
    log = json.loads(Path(download.value.path()).read_text())
    boxes = log["prediction"]["boxes"]
    assert log["model_card"]["task"] == "detect" and log["prediction"]["counts"]["defect"] == len(boxes)
    overlap = iou_matrix(np.array(truth[name], float), np.array([b["box"] for b in boxes]).reshape(-1, 4))
    assert (overlap.max(axis=1) >= 0.5).all(), f"planted {truth[name]}, found {boxes}"

    sidebar = page.get_by_test_id("stSidebar")
    slider = sidebar.get_by_test_id("stSlider").filter(has_text="Score threshold").get_by_role("slider")
    slider.focus()
    page.keyboard.press("End")  # threshold 1.0: no box scores that high
    page.locator("h3").filter(has_text="ok · no box").wait_for()
    _shot(page, "detect-2-threshold")


@pytest.mark.slow
def test_batch_counts_boxes_and_evaluate_shows_map(server, page, planted_boxes):
    url, root = server
    data, truth = planted_boxes
    page.goto(f"{url}/batch")
    page.get_by_role("heading", name="Batch").wait_for()
    page.get_by_role("button", name="Predict").click()
    page.get_by_text("boxes per class over 6 image(s)").wait_for()
    page.get_by_role("heading", name="Gallery").wait_for()
    _shot(page, "detect-3-batch")

    page.goto(f"{url}/evaluate")
    page.get_by_role("heading", name="Evaluate").wait_for()
    field = page.get_by_label("Labelled dataset (folder or CSV)")
    field.fill(str(data))
    field.press("Enter")
    page.get_by_role("button", name="Evaluate").click()
    metric = page.get_by_test_id("stMetric").filter(has_text="map50").first
    metric.wait_for()
    assert float(metric.get_by_test_id("stMetricValue").inner_text()) > 0.5
    _shot(page, "detect-4-evaluate")
