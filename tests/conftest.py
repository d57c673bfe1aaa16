"""Shared fixtures: small synthetic datasets and one tiny trained bundle per session."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@contextlib.contextmanager
def uvicorn_thread(app):
    """Serve an ASGI app with a real uvicorn server on a free loopback port, in a thread; yields its URL."""
    import threading

    import uvicorn

    port = free_port()
    instance = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not instance.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert instance.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(10)


def png_bytes(array) -> bytes:
    """A uint8 array as PNG file bytes (uploads, image files)."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Debian's chromium as the browser tests start it (no downloads, no sandbox inside containers).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-dev-shm-usage",
]


@contextlib.contextmanager
def running_app(root: Path, wait_s: float = 90):
    """``inspekt app`` on a free port over the workspace ``root`` (its output in root/app.log), up and
    healthy; yields (url, process) and stops it afterwards. Fails the test with the log's tail when it
    does not start within ``wait_s``."""
    port = free_port()
    with (root / "app.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "inspekt", "app", "--port", str(port), "--workspace", str(root)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.5)
        else:
            process.kill()
            pytest.fail("the app did not start: " + (root / "app.log").read_text(errors="replace")[-2000:])
        try:
            yield url, process
        finally:
            process.terminate()
            process.wait(timeout=20)


def shared_dataset(name: str) -> Path:
    """Path of a development dataset, or skip the test with a message when it is absent."""
    path = SHARED / name
    if not path.is_dir():
        pytest.skip(f"development dataset {path} is not present (only on the team's machines)")
    return path


@pytest.fixture(scope="session")
def synth_classes(tmp_path_factory) -> Path:
    """80 synthetic 48x48 surfaces in class folders (ok, pore, lop, scratch)."""
    from inspekt.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("synth") / "classes", n=80, size=48, seed=1).root


@pytest.fixture(scope="session")
def trained(synth_classes, tmp_path_factory):
    """A tiny_cnn trained for 8 quick epochs on ``synth_classes`` (a TrainResult; better than chance)."""
    from inspekt.config import TrainConfig
    from inspekt.engine.trainer import train

    cfg = TrainConfig(
        task="classify",
        data=str(synth_classes),
        epochs=8,
        imgsz=32,
        batch=8,
        lr=0.005,
        augment="none",
        warmup_epochs=0,
        model_params={"width": 8},
        threads=1,
        out=str(tmp_path_factory.mktemp("runs")),
    )
    return train(cfg)


def planted(rng, size: int = 64):
    """A dark noisy image with 0-3 bright squares (10-16 px) that do not touch, and their boxes."""
    import numpy as np

    image = rng.integers(20, 60, (size, size), dtype=np.uint8)
    boxes: list[tuple[int, int, int, int]] = []
    for _ in range(int(rng.integers(0, 4))):
        side = int(rng.integers(10, 17))
        x0, y0 = (int(v) for v in rng.integers(2, size - side - 2, 2))
        if any(not (x0 > c + 2 or x0 + side + 2 < a or y0 > d + 2 or y0 + side + 2 < b) for a, b, c, d in boxes):
            continue
        image[y0 : y0 + side, x0 : x0 + side] = 220
        boxes.append((x0, y0, x0 + side, y0 + side))
    return image, boxes


@pytest.fixture(scope="session")
def planted_boxes(tmp_path_factory):
    """60 planted-box images as images/ + masks/ (a detector reads one box per mask region), and the
    true boxes by file name."""
    import numpy as np

    from inspekt.io import save_image

    root = tmp_path_factory.mktemp("planted") / "data"
    rng, truth = np.random.default_rng(0), {}
    for i in range(60):
        image, boxes = planted(rng)
        mask = np.zeros_like(image)
        for x0, y0, x1, y1 in boxes:
            mask[y0:y1, x0:x1] = 255
        save_image(root / "images" / f"im{i:02d}.png", image)
        save_image(root / "masks" / f"im{i:02d}.png", mask)
        truth[f"im{i:02d}.png"] = boxes
    return root, truth


@pytest.fixture(scope="session")
def detect_trained(planted_boxes, tmp_path_factory):
    """The tiny detector trained on the planted boxes (about a minute on an idle CPU)."""
    from inspekt.engine.trainer import train

    root, _ = planted_boxes
    return train(
        task="detect",
        data=str(root),
        model_params={"width": 8, "neck": 32},
        epochs=10,
        imgsz=64,
        batch=8,
        lr=0.005,
        augment="none",
        warmup_epochs=0,
        threads=2,
        out=str(tmp_path_factory.mktemp("detect-runs")),
    )


@pytest.fixture
def small_demo(monkeypatch):
    """The demo module with tiny datasets and a one-epoch model, so building it takes seconds."""
    from inspekt import demo

    monkeypatch.setattr(
        demo,
        "DATASETS",
        {
            "surfaces": ("classes", 32, 0),
            "surfaces-seg": ("segmentation", 12, 1),
            "surfaces-mvtec": ("mvtec", 24, 2),
            "incoming": ("classes", 8, 9),
        },
    )
    for name, value in (("IMAGE_SIZE", 32), ("IMGSZ", 32), ("EPOCHS", 1), ("SEG_EPOCHS", 1), ("ANOMALY_EPOCHS", 1)):
        monkeypatch.setattr(demo, name, value)
    return demo


# --- a real S3-compatible server (moto_server) on loopback, for every test that needs storage ---


def _moto_server() -> str | None:
    beside = Path(sys.executable).with_name("moto_server")
    return str(beside) if beside.exists() else shutil.which("moto_server")


def _wait_until_up(url: str, proc: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto_server exited with status {proc.returncode}")
        try:
            urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"moto_server did not answer on {url} within {seconds} s")


def reset_s3_clients() -> None:
    # s3fs caches one client per set of arguments; environment changes need a fresh one.
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real moto S3 server on 127.0.0.1, configured the way a user would (AWS_* environment)."""
    pytest.importorskip("s3fs", reason="s3fs is not installed (pip install 'inspekt[dist]')")
    exe = _moto_server()
    if exe is None:
        pytest.skip("moto_server is not installed (pip install 'moto[server]'); S3 tests need a real server")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    settings = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": url,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {key: os.environ.get(key) for key in settings}
    try:
        _wait_until_up(url, proc)
        os.environ.update(settings)
        reset_s3_clients()
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        reset_s3_clients()
