"""First-prediction latency of the workbench on the demo workspace, in a real browser.

Starts ``inspekt app`` on a free port (the workspace must exist: ``inspekt demo --workspace DIR``),
opens it in Debian's headless chromium, uploads one image and times until the prediction card
shows; then a second image. Prints both times (they include Streamlit's round trip).

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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=Path("workspace"))
    args = parser.parse_args()
    images = sorted((args.workspace / "data" / "incoming").rglob("*.png"))
    if len(images) < 2:
        sys.exit(f"no demo images in {args.workspace}/data/incoming; run inspekt demo --workspace {args.workspace}")
    from playwright.sync_api import sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "inspekt", "app", "--port", str(port), "--workspace", str(args.workspace)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        t_start = time.perf_counter()
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.2)
        print(f"server up after {time.perf_counter() - t_start:.1f} s")
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=shutil.which("chromium"),
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"],
            )
            page = browser.new_page()
            page.set_default_timeout(60_000)
            t0 = time.perf_counter()
            page.goto(url)
            page.get_by_role("heading", name="Inspect").wait_for()
            print(f"page shown after {time.perf_counter() - t0:.2f} s (includes loading the model)")
            uploader = page.get_by_test_id("stFileUploader").filter(has_text="Images (drag and drop")
            for n, image in enumerate(images[:2], 1):
                t0 = time.perf_counter()
                uploader.locator("input[type=file]").set_input_files(str(image))
                page.locator("h3").filter(has_text=image.parent.name if n == 0 else "%").last.wait_for()
                page.wait_for_function("() => !document.querySelector('[data-testid=stStatusWidget]')", timeout=60_000)
                server_ms = page.get_by_text("ms (model").last.inner_text()
                print(
                    f"prediction {n}: {time.perf_counter() - t0:.2f} s from upload to prediction card "
                    f"(in the app: {server_ms})"
                )
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=20)
    return 0


if __name__ == "__main__":
    sys.exit(main())
