"""Shared fixtures: small synthetic datasets and one tiny trained bundle per session."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (for the servers the tests start)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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
