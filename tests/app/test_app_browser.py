"""The workbench end to end: ``inspekt app`` as a subprocess on a free loopback port, driven by
Playwright in Debian's headless Chromium. Screenshots go to ``test-artifacts/app/``."""

from __future__ import annotations

import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import CHROMIUM_ARGS, running_app

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api")
pytest.importorskip("streamlit")
if CHROMIUM is None:
    pytest.skip("Debian's chromium is not installed (make test installs it)", allow_module_level=True)

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "app"
ARGS = [
    *CHROMIUM_ARGS,
    "--use-fake-ui-for-media-stream",  # a camera that needs no permission prompt ...
    "--use-fake-device-for-media-stream",  # ... and films chromium's test pattern
]
WAIT_MS = 90_000


@pytest.fixture(scope="module")
def server(trained, synth_classes, tmp_path_factory):
    root = tmp_path_factory.mktemp("browser-ws")
    shutil.copytree(trained.bundle, root / "models" / "classifier")
    shutil.copytree(Path(synth_classes) / "pore", root / "data" / "incoming" / "pore")
    with running_app(root, wait_s=60) as (url, process):
        (root / "app.pid").write_text(str(process.pid))  # `inspekt app` becomes the Streamlit server: same pid
        yield url, root


@pytest.fixture(scope="module")
def page(server):
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
        tab = context.new_page()
        tab.set_default_timeout(WAIT_MS)
        yield tab
        browser.close()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def _pixels(locator) -> np.ndarray:
    """The element's rendered grey pixels, once every image on the page has finished loading."""
    from PIL import Image

    locator.page.wait_for_function(
        "() => [...document.querySelectorAll('[data-testid=stImage] img')].every(i => i.complete && i.naturalWidth > 0)"
    )
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("L"), dtype=np.float32)


@pytest.mark.slow
def test_a_deep_link_as_the_first_visit_shows_the_named_pages(server, page):
    """The first page this fresh server serves is /evaluate: the sidebar names the pages (it listed the
    files of a pages/ folder, main, batch, drift, ..., until someone opened /)."""
    url, _ = server
    page.goto(f"{url}/evaluate")
    nav = page.locator('[data-testid="stSidebarNav"]')
    nav.get_by_text("Evaluate", exact=True).wait_for()
    names = [line for line in nav.inner_text().splitlines() if line.strip()]
    assert [n for n in names if n[0].isupper()] == [
        "Inspect",
        "Batch",
        "Evaluate",
        "Drift",
        "Train",
        "Review",
        "Monitor",
    ]
    assert "main" not in names


@pytest.mark.slow
def test_inspect_upload_enhance_explain_and_download(server, page, synth_classes):
    url, _ = server
    page.goto(url)
    page.get_by_role("heading", name="Inspect").wait_for()
    image = sorted((Path(synth_classes) / "pore").glob("*.png"))[0]
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Images (drag and drop")
    uploader.locator("input[type=file]").set_input_files(str(image))
    card = page.locator("h3").filter(has_text="%")
    card.wait_for()
    assert card.inner_text().split(" · ")[0].strip() in ("lop", "ok", "pore", "scratch")
    before = _pixels(page.get_by_test_id("stImage").first)  # nothing enhanced: the original alone
    assert before.std() > 1.0  # a real picture, not a blank box
    _shot(page, "1-prediction")

    page.get_by_test_id("stSidebar").get_by_text("Brightness / contrast").click()
    caption = page.get_by_text("enhancement: brightness_contrast(brightness=0")
    caption.wait_for()
    slider = page.get_by_test_id("stSidebar").get_by_role("slider").first
    slider.focus()
    for _ in range(30):
        page.keyboard.press("ArrowRight")
    page.get_by_text("enhancement: brightness_contrast(brightness=30").wait_for()
    page.wait_for_timeout(1500)
    after = _pixels(page.get_by_test_id("stImage").nth(1))
    assert after.mean() > before.mean() + 5  # the preview got brighter
    _shot(page, "2-enhanced")

    page.get_by_text("Grad-CAM", exact=True).click()
    page.get_by_text("gradcam for").wait_for()
    _shot(page, "3-gradcam")

    with page.expect_download() as download:
        page.get_by_role("button", name="Download JSON log").click()
    log = json.loads(Path(download.value.path()).read_text())
    assert log["file"] == image.name
    assert (
        log["enhancement"][0]["step"] == "brightness_contrast" and log["enhancement"][0]["params"]["brightness"] == 30
    )
    assert log["model_card"]["task"] == "classify" and log["prediction"]["label"] in log["model_card"]["classes"]
    assert log["timings_ms"]["total"] > 0
    from inspekt.bundle import model_version, open_bundle

    assert log["model_version"] == model_version(open_bundle(server[1] / "models" / "classifier"))  # name@hash


@pytest.mark.slow
def test_drift_check_of_uploaded_images_shows_a_verdict(server, page, synth_classes):
    url, _ = server
    page.goto(f"{url}/drift")
    page.get_by_role("heading", name="Drift").wait_for()
    images = sorted((Path(synth_classes) / "ok").glob("*.png"))[:8]
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="incoming images")
    uploader.locator("input[type=file]").set_input_files([str(p) for p in images])
    page.get_by_text(images[-1].name).wait_for()
    page.get_by_role("button", name="Check drift").click()
    verdict = page.get_by_text("drift detected", exact=False).first
    verdict.wait_for()
    assert "drift detected" in verdict.inner_text().lower()
    assert f"vs {len(images)} incoming images" in page.get_by_test_id("stAlert").first.inner_text()
    page.get_by_text("Domain-classifier drift score").wait_for()
    _shot(page, "4-drift")


def _peak_rss_mb(root: Path) -> int:
    status = Path(f"/proc/{(root / 'app.pid').read_text()}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:"))) // 1024


@pytest.mark.slow
def test_batch_zip_upload_refuses_a_zip_bomb_member_and_predicts_the_rest(server, page, synth_classes, tmp_path):
    url, root = server
    good = sorted((Path(synth_classes) / "ok").glob("*.png"))[:2]
    upload = tmp_path / "images.zip"
    with zipfile.ZipFile(upload, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in good:
            archive.write(path, f"images/{path.name}")
        with archive.open("images/bomb.bmp", "w", force_zip64=True) as bomb:  # 600 MB of zeros in ~600 KB
            for _ in range(600):
                bomb.write(bytes(2**20))
    before = _peak_rss_mb(root)
    page.goto(f"{url}/batch")
    page.get_by_role("heading", name="Batch").wait_for()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="zip of images")
    uploader.locator("input[type=file]").set_input_files(str(upload))
    page.get_by_text("images.zip").first.wait_for()
    page.get_by_role("button", name="Predict").click()
    page.get_by_role("heading", name="Gallery").wait_for()
    warning = page.get_by_test_id("stAlert").filter(has_text="skipped 1 file(s)")
    warning.wait_for()
    assert "bomb.bmp" in warning.inner_text() and "zip bomb" in warning.inner_text()
    sync_api.expect(page.get_by_test_id("stImage")).to_have_count(len(good), timeout=WAIT_MS)
    assert _peak_rss_mb(root) - before < 300, "the bomb member was inflated"
    _shot(page, "5-batch-zip")


@pytest.mark.slow
def test_batch_evaluate_train_and_monitor_pages(server, page, synth_classes):
    url, root = server
    page.goto(f"{url}/batch")
    page.get_by_role("heading", name="Batch").wait_for()
    page.get_by_role("button", name="Predict").click()
    page.get_by_role("heading", name="Gallery").wait_for()
    page.get_by_test_id("stDataFrame").wait_for()
    n_images = len(list((root / "data" / "incoming").rglob("*.png")))
    sync_api.expect(page.get_by_test_id("stImage")).to_have_count(n_images, timeout=WAIT_MS)  # waits for the gallery
    _shot(page, "5-batch")

    page.goto(f"{url}/evaluate")
    page.get_by_role("heading", name="Evaluate").wait_for()
    field = page.get_by_label("Labelled dataset (folder or CSV)")
    field.fill(str(synth_classes))
    field.press("Enter")
    page.get_by_role("button", name="Evaluate").click()
    page.get_by_text("Confusion matrix").wait_for()
    sync_api.expect(page.get_by_test_id("stMetric")).to_have_count(8, timeout=WAIT_MS)  # accuracy ... ece, 2 rates
    _shot(page, "6-evaluate")

    page.goto(f"{url}/train")
    page.get_by_role("heading", name="Train").wait_for()
    page.get_by_text("No runs started from the workbench yet.").wait_for()
    _shot(page, "7-train")

    page.goto(f"{url}/monitor")
    page.get_by_text("No monitoring history at").wait_for()


def _inspect(page, url: str, images: list[Path]):
    """A fresh Inspect page with ``images`` uploaded one after another; the verdict of the last."""
    page.goto(url)
    page.get_by_role("heading", name="Inspect").wait_for()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Images (drag and drop")
    for image in images:
        uploader.locator("input[type=file]").set_input_files(str(image))
        page.get_by_text(f"on {image.name}").wait_for()  # "by <model> · <digest> on <image>"
    return page.locator("h3").filter(has_text="%").first


@pytest.mark.slow
def test_inspect_shows_the_newest_upload_verdict_first_and_one_image(server, page, synth_classes):
    url, _ = server
    first, second = (
        sorted((Path(synth_classes) / "pore").glob("*.png"))[0],
        sorted((Path(synth_classes) / "ok").glob("*.png"))[0],
    )
    verdict = _inspect(page, url, [first, second])  # waits for the caption naming the second upload
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')")
    assert page.get_by_text(f"on {first.name}").count() == 0, "the page still shows the first upload"
    box = verdict.bounding_box()
    assert box is not None and box["y"] < 1000, f"the verdict starts {box} px down, below the first screen"
    sync_api.expect(page.get_by_test_id("stImage")).to_have_count(1)  # nothing enhanced: the original alone
    _shot(page, "8-inspect-newest-upload")


@pytest.mark.slow
def test_unreadable_uploads_are_named_at_once_and_the_readable_one_is_answered(server, page, synth_classes, tmp_path):
    url, _ = server
    good = sorted((Path(synth_classes) / "ok").glob("*.png"))[0]
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "cut.png").write_bytes(good.read_bytes()[:20])  # cut inside its header
    page.goto(url)
    page.get_by_role("heading", name="Inspect").wait_for()
    uploader = page.get_by_test_id("stFileUploader").filter(has_text="Images (drag and drop")
    uploader.locator("input[type=file]").set_input_files(
        [str(tmp_path / "notes.png"), str(tmp_path / "cut.png"), str(good)]
    )
    page.get_by_text("2 upload(s) cannot be read and are left out: notes.png:").wait_for()
    page.get_by_text(f"on {good.name}").wait_for()  # the readable one is answered, whatever came last
    _shot(page, "9-inspect-unreadable-uploads")


@pytest.mark.slow
def test_an_uploaded_bundle_answers_and_says_so(server, page, trained, synth_classes, tmp_path):
    from inspekt.bundle import copy_bundle, open_bundle

    source = open_bundle(trained.bundle)
    dice = ("one", "two", "three", "four")
    upload = copy_bundle(
        source, tmp_path / "dice.inspekt", card=source.card.model_copy(update={"classes": dice}), archive=True
    )
    url, _ = server
    image = sorted((Path(synth_classes) / "pore").glob("*.png"))[0]
    verdict = _inspect(page, url, [image])
    assert verdict.inner_text().split(" · ")[0].strip() in ("lop", "ok", "pore", "scratch")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_test_id("stFileUploader").locator("input[type=file]").set_input_files(str(upload))
    page.get_by_text("by uploaded: dice.inspekt · ").wait_for()
    assert verdict.inner_text().split(" · ")[0].strip() in dice
    picker = sidebar.get_by_test_id("stSelectbox").first
    shown = picker.inner_text() + " ".join(picker.locator("input").evaluate_all("inputs => inputs.map(i => i.value)"))
    assert "uploaded: dice.inspekt" in shown  # the picker says which model answers
    _shot(page, "9-inspect-uploaded-bundle")


@pytest.mark.slow
def test_a_camera_photo_taken_after_an_upload_is_the_one_answered(server, page, synth_classes):
    url, _ = server
    _inspect(page, url, [sorted((Path(synth_classes) / "pore").glob("*.png"))[0]])
    page.get_by_text("Use the camera").click()
    # the button is there before the fake camera's stream: a click then takes no photo
    page.wait_for_function("() => { const v = document.querySelector('video'); return v && v.readyState >= 2; }")
    page.get_by_role("button", name="Take Photo").click()
    page.get_by_text("on camera.jpg").wait_for()  # the photo, not the first upload
    page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')")
    sync_api.expect(page.get_by_test_id("stImage")).to_have_count(1)
    _shot(page, "10-inspect-camera-photo")
