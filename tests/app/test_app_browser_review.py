"""The Review page end to end: ``inspekt app`` as a subprocess, driven by Playwright in Debian's
headless Chromium: a queue walked with the keyboard, a mask drawn with the brush (a mouse drag on
the canvas), corrections.csv written, a retrain on the corrected data started and compared.
Screenshots go to ``test-artifacts/app/``."""

from __future__ import annotations

import csv
import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import CHROMIUM_ARGS, running_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api")
if importlib.util.find_spec("streamlit_drawable_canvas") is None:  # importing it needs a running app
    pytest.skip("streamlit-drawable-canvas is not installed (pip install inspekt[app])", allow_module_level=True)
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "app"
WAIT_MS = 90_000


@pytest.fixture(scope="module")
def served(trained, synth_classes, tmp_path_factory):
    """A workspace whose model is a run (runs/classify/base) with its images and an issues CSV naming
    three of them; the app serving it."""
    from inspekt.curate.issues import DataIssue, write_issues_csv

    root = tmp_path_factory.mktemp("review-browser-ws")
    shutil.copytree(trained.run_dir, root / "runs" / "classify" / "base")
    data = root / "data" / "surfaces"
    shutil.copytree(synth_classes, data)
    names = [f"ok/{p.name}" for p in sorted((data / "ok").glob("*.png"))[:3]]
    write_issues_csv(
        [DataIssue(k, n, None, "label", 0.9, "ok", "pore", "planted") for k, n in enumerate(names, 1)],
        root / "issues.csv",
    )
    with running_app(root, wait_s=60) as (url, process):
        yield url, root, names


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _rows(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _idle(page) -> None:
    """Wait until the app's script run has finished (its "running" indicator is gone)."""
    page.wait_for_timeout(300)
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget] button')")


def _press(page, key: str, then: str) -> None:
    """Press a page shortcut with nothing focused (a focused text box would take the key)."""
    _idle(page)
    page.evaluate("() => document.activeElement && document.activeElement.blur()")
    page.keyboard.press(key)
    try:
        page.get_by_text(then).first.wait_for(timeout=30_000)
    except sync_api.TimeoutError:
        _shot(page, f"review-failed-{key}")
        raise


def _brush(page) -> tuple[float, float]:
    """Drag the brush across the middle of the canvas; the drag's share of the canvas width."""
    canvas = page.locator("canvas.upper-canvas").last  # fabric.js draws on the upper of its two canvases
    canvas.wait_for(state="visible")
    page.wait_for_timeout(1000)  # the component has mounted and loaded its background
    canvas.scroll_into_view_if_needed()
    box = canvas.bounding_box()
    y = box["y"] + box["height"] / 2
    page.mouse.move(box["x"] + box["width"] * 0.25, y)
    page.mouse.down()
    for k in range(1, 21):
        page.mouse.move(box["x"] + box["width"] * (0.25 + 0.5 * k / 20), y)
    page.mouse.up()
    return 0.25, 0.75


@pytest.mark.slow
def test_review_walk_the_queue_by_keys_draw_a_mask_and_retrain(served):
    from inspekt.bundle import open_bundle
    from inspekt.data import open_dataset
    from inspekt.io import load_image

    url, root, names = served
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_context(viewport={"width": 1400, "height": 1100}).new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(url)  # a deep link to /review on a fresh server shows Streamlit's file pages, not the app's
        page.get_by_role("heading", name="Inspect").wait_for()
        page.get_by_test_id("stSidebarNav").get_by_text("Review").click()
        page.get_by_role("heading", name="Review").wait_for()
        page.get_by_role("button", name="Build the queue").click()
        page.get_by_text("1 / 3").wait_for()
        page.get_by_text("model:").first.wait_for()
        _shot(page, "review-1-queue")

        _press(page, "s", "2 / 3")  # skip
        _press(page, "1", "3 / 3")  # relabel to the first class (lop)
        page.get_by_text("Correct the mask").click()
        start, end = _brush(page)
        save = page.get_by_role("button", name="Save mask")
        sync_api.expect(save).to_be_enabled(timeout=WAIT_MS)  # the strokes reached the app
        save.click()
        page.get_by_text("new mask").wait_for()
        page.wait_for_timeout(1500)
        _shot(page, "review-2-mask")
        _press(page, "x", "Queue done")  # exclude the third

        fixes = root / "data" / "surfaces" / ".inspekt-corrections"
        rows = _rows(fixes / "corrections.csv")
        assert [(r["path"], r["field"], r["old"], r["new"]) for r in rows] == [
            (names[1], "label", "ok", "lop"),
            (names[2], "mask", "", rows[1]["new"]),
            (names[2], "exclude", "false", "true"),
        ]
        mask = load_image(root / "data" / "surfaces" / rows[1]["new"], mode="L") > 0
        columns = np.flatnonzero(mask.any(axis=0)) / mask.shape[1]
        assert mask.sum() > 0 and start - 0.1 < columns.min() and columns.max() < end + 0.1  # where the brush went

        page.get_by_label("Epochs").fill("1")
        page.get_by_label("Epochs").press("Enter")
        page.get_by_label("Run name").fill("fixed")
        page.get_by_label("Run name").press("Enter")
        page.get_by_role("button", name="Retrain with corrections").click()
        page.get_by_text("started fixed").wait_for()
        page.get_by_text("after fixed").wait_for(timeout=180_000)  # the comparison, once the run is done
        page.get_by_test_id("stDataFrame").last.wait_for()
        _shot(page, "review-3-compare")
        browser.close()
    new = open_bundle(root / "runs" / "classify" / "fixed" / "bundle").card
    old = open_bundle(root / "runs" / "classify" / "base" / "bundle").card
    corrected = open_dataset(root / "data" / "surfaces")
    assert new.data.fingerprint == corrected.fingerprint() != old.data.fingerprint
