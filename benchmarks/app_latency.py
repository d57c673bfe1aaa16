"""Latency of the workbench on the demo workspace, in a real browser, as a user feels it.

Starts ``inspekt app`` on a free port (the workspace must exist: ``inspekt demo --workspace DIR``),
opens it in Debian's headless chromium and times, each until the page shows the answer and has
stopped running (they include Streamlit's round trip):

    upload -> verdict     an image dropped on Inspect until its verdict names it (twice: the first
                          includes the model's first call)
    model switch          another model chosen in the sidebar until the verdict says it answered
    slider move           one step of an enhancement slider until the preview and verdict follow
    Grad-CAM toggle       Grad-CAM switched on until its overlay shows

Targets on 2 cores: verdict < 1 s, slider < 0.5 s, Grad-CAM < 2 s.

    .venv/bin/python benchmarks/app_latency.py --workspace workspace
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

TARGETS = {"upload -> verdict": 1.0, "slider move": 0.5, "Grad-CAM toggle": 2.0}
CLASSIFIER, SEGMENTER = "models/surface-classifier.inspekt", "models/surface-segmenter.inspekt"
QUIET = "() => !document.querySelector('[data-testid=stStatusWidget]')"  # the app stopped running


def _serve(workspace: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "inspekt", "app", "--port", str(port), "--workspace", str(workspace)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url, t_start = f"http://127.0.0.1:{port}", time.perf_counter()
    while True:
        try:
            if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                break
        except OSError:
            time.sleep(0.2)
    print(f"server up after {time.perf_counter() - t_start:.1f} s")
    return server, url


def _timed(page, what: str, act, shown: str) -> float:
    """Seconds from ``act()`` until the text ``shown`` is on the page and the app stopped running."""
    t0 = time.perf_counter()
    act()
    page.get_by_text(shown).first.wait_for()
    page.wait_for_function(QUIET, timeout=60_000)
    seconds = time.perf_counter() - t0
    target = TARGETS.get(what.split(" (")[0])
    verdict = "" if target is None else f"  (target < {target:g} s: {'met' if seconds < target else 'MISSED'})"
    print(f"{what:<34} {seconds:6.2f} s{verdict}")
    return seconds


def _choose(page, label: str) -> None:
    page.get_by_test_id("stSidebar").get_by_test_id("stSelectbox").first.click()
    page.get_by_role("option", name=label, exact=True).click()


def _session(page, url: str, images: list[Path]) -> None:
    t0 = time.perf_counter()
    page.goto(url)
    page.get_by_role("heading", name="Inspect").wait_for()
    page.wait_for_function(QUIET, timeout=60_000)
    print(f"{'page shown (includes the model)':<34} {time.perf_counter() - t0:6.2f} s")
    _choose(page, CLASSIFIER)  # the picker starts on the last choice: start from the classifier
    page.wait_for_function(QUIET, timeout=60_000)
    files = page.get_by_test_id("stFileUploader").filter(has_text="Images (drag and drop").locator("input[type=file]")
    for n, image in enumerate(images[:2], 1):
        _timed(
            page, f"upload -> verdict ({n})", lambda image=image: files.set_input_files(str(image)), f"on {image.name}"
        )
    print(f"{'  in the app':<34} {page.get_by_text('ms (model').last.inner_text()}")
    _timed(page, "model switch (to the segmenter)", lambda: _choose(page, SEGMENTER), f"by {SEGMENTER}")
    _timed(page, "model switch (back)", lambda: _choose(page, CLASSIFIER), f"by {CLASSIFIER}")
    sidebar = page.get_by_test_id("stSidebar")
    sidebar.get_by_text("Brightness / contrast").click()
    page.get_by_text("enhancement: brightness_contrast(brightness=0").wait_for()
    page.wait_for_function(QUIET, timeout=60_000)
    slider = sidebar.get_by_role("slider").first
    slider.focus()
    for step in (1, 2, 3):
        _timed(page, "slider move", lambda: page.keyboard.press("ArrowRight"), f"brightness_contrast(brightness={step}")
    toggle = page.get_by_text("Grad-CAM", exact=True)
    _timed(page, "Grad-CAM toggle (first)", toggle.click, "gradcam for")  # the first loads torch and the explainer
    toggle.click()
    page.get_by_text("gradcam for").wait_for(state="detached")
    page.wait_for_function(QUIET, timeout=60_000)
    _timed(page, "Grad-CAM toggle (again)", toggle.click, "gradcam for")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=Path("workspace"))
    args = parser.parse_args()
    images = sorted((args.workspace / "data" / "incoming").rglob("*.png"))
    if len(images) < 2 or not (args.workspace / CLASSIFIER).is_file():
        sys.exit(f"no demo workspace at {args.workspace}; run inspekt demo --workspace {args.workspace}")
    from playwright.sync_api import sync_playwright

    server, url = _serve(args.workspace)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"),
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            _session(page, url, images)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
