"""The built-in demo workspace: inspekt's own synthetic data and a model trained on it.

Built once; running it again finds what exists and returns in seconds.

    <workspace>/data/surfaces          class folders (ok, pore, lop, scratch)
    <workspace>/data/surfaces-seg      images/ + masks/ (segmentation)
    <workspace>/data/surfaces-mvtec    train/good, test/<type>, ground_truth/ (anomaly)
    <workspace>/data/incoming          unseen images to predict
    <workspace>/runs/classify/demo     the training run (config, results.csv, bundle/)
    <workspace>/models/surface-classifier.inspekt   the model as one file
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .bundle import SUFFIX, copy_bundle, open_bundle
from .config import TrainConfig
from .data.synth import write_dataset
from .io import list_images
from .predictor import Prediction, Predictor
from .training import train

DATASETS = {  # name: (layout, images, seed)
    "surfaces": ("classes", 480, 0),
    "surfaces-seg": ("segmentation", 200, 1),
    "surfaces-mvtec": ("mvtec", 200, 2),
    "incoming": ("classes", 24, 99),
}
IMAGE_SIZE, IMGSZ, EPOCHS = 96, 64, 20
MODEL_NAME = "surface-classifier"


@dataclass
class DemoWorkspace:
    """What the demo built (or found already built)."""

    root: Path
    datasets: dict[str, Path]
    model: Path
    metrics: dict[str, float]
    predictions: list[Prediction]
    built: list[str] = field(default_factory=list)


def _datasets(root: Path, built: list[str]) -> dict[str, Path]:
    paths = {}
    for name, (layout, n, seed) in DATASETS.items():
        path = root / "data" / name
        if not path.is_dir() or not any(path.iterdir()):
            write_dataset(path, n=n, size=IMAGE_SIZE, seed=seed, layout=layout, overwrite=True)
            built.append(f"data/{name}")
        paths[name] = path
    return paths


def _model(root: Path, data: Path, built: list[str], on_epoch: Callable | None) -> Path:
    model = root / "models" / (MODEL_NAME + SUFFIX)
    if model.is_file():
        return model
    cfg = TrainConfig(task="classify", data=str(data), epochs=EPOCHS, imgsz=IMGSZ, batch=32, augment="light",
                      out=str(root / "runs"), name="demo", exist_ok=True)
    result = train(cfg, on_epoch=on_epoch)
    copy_bundle(open_bundle(result.bundle), model, archive=True)  # already parity-checked by train
    built.append(f"runs/classify/demo and models/{model.name}")
    return model


def build_demo(workspace: str | Path, *, on_epoch: Callable[[dict], None] | None = None) -> DemoWorkspace:
    """Build (or reuse) the demo workspace and predict its incoming images.

    Args:
        workspace: folder to build in.
        on_epoch: progress callback while the demo model trains.

    Returns:
        What exists in the workspace, with predictions for ``data/incoming``.
    """
    root, built = Path(workspace), []
    datasets = _datasets(root, built)
    model = _model(root, datasets["surfaces"], built, on_epoch)
    predictor = Predictor.load(model)
    predictions = predictor.predict(list_images(datasets["incoming"]))
    return DemoWorkspace(root, datasets, model, dict(predictor.card.metrics), predictions, built)
