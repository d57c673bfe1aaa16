"""The built-in demo workspace: inspekt's own synthetic data and a model trained on it.

Built once; running it again finds what exists and returns in seconds.

    <workspace>/data/surfaces          class folders (ok, pore, lop, scratch), with PLANTED images
                                       moved to a wrong class folder (their file names keep the true
                                       class) so ``inspekt data issues`` and the Review page have
                                       something to find; listed in <workspace>/planted-label-errors.csv
    <workspace>/data/surfaces-seg      images/ + masks/ (segmentation)
    <workspace>/data/surfaces-mvtec    train/good, test/<type>, ground_truth/ (anomaly)
    <workspace>/data/incoming          unseen images to predict
    <workspace>/data/incoming-drifted  the same images darker and blurred: a drift to detect
    <workspace>/runs/classify/demo     the training runs (config, results.csv, bundle/)
    <workspace>/runs/segment/demo
    <workspace>/runs/anomaly/demo
    <workspace>/models/surface-classifier.inspekt   the models as single files
    <workspace>/models/surface-segmenter.inspekt
    <workspace>/models/surface-anomaly.inspekt      trained on data/surfaces-mvtec/train/good only
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from inspekt.bundle import SUFFIX, copy_bundle, open_bundle
from inspekt.config import TrainConfig
from inspekt.data.synth import write_dataset
from inspekt.engine.predictor import Predictor
from inspekt.engine.trainer import train
from inspekt.io import list_images
from inspekt.progress import say, step
from inspekt.results import Prediction

DATASETS = {  # name: (layout, images, seed)
    "surfaces": ("classes", 480, 0),
    "surfaces-seg": ("segmentation", 200, 1),
    "surfaces-mvtec": ("mvtec", 400, 2),
    "incoming": ("classes", 24, 99),
}
DEMO_DATA = {"classify": "surfaces", "segment": "surfaces-seg", "anomaly": "surfaces-mvtec"}  # each task's demo set
IMAGE_SIZE, IMGSZ, EPOCHS, SEG_EPOCHS, ANOMALY_EPOCHS = 96, 64, 20, 12, 300
# The demo's anomaly model: an SSIM autoencoder, the method that does best on the demo's few (60)
# normal textures (image AUROC 0.96, pixel AUROC 0.99 in about 30 s; DRAEM, the default for real data,
# needs thousands of steps to learn its synthetic defects).
ANOMALY_METHOD = "ae_ssim"
MODEL_NAME, SEGMENTER_NAME, ANOMALY_NAME = "surface-classifier", "surface-segmenter", "surface-anomaly"
DRIFTED = "incoming-drifted"
PLANTED, PLANTED_LIST = 8, "planted-label-errors.csv"  # wrong labels planted in data/surfaces (1.7 %)


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
            with step(f"writing data/{name}", n) as advance:  # write_dataset calls progress after each image
                write_dataset(
                    path, n=n, size=IMAGE_SIZE, seed=seed, layout=layout, overwrite=True, progress=lambda _: advance()
                )
            built.append(f"data/{name}")
        paths[name] = path
    if "data/surfaces" in built:
        _plant_label_errors(paths["surfaces"], root / PLANTED_LIST)
    return paths


def _plant_label_errors(folder: Path, listing: Path) -> None:
    """Move ``PLANTED`` images (seed 0) into another class's folder and list them (path, true, given)."""
    import csv

    import numpy as np

    files = list_images(folder)
    classes = sorted({f.parent.name for f in files})
    rng = np.random.default_rng(0)
    rows = []
    for index in sorted(rng.choice(len(files), size=min(PLANTED, len(files)), replace=False)):
        source = files[index]
        given = classes[(classes.index(source.parent.name) + 1 + int(rng.integers(len(classes) - 1))) % len(classes)]
        target = folder / given / source.name
        source.rename(target)
        rows.append((target.relative_to(listing.parent).as_posix(), source.parent.name, given))
    with listing.open("w", newline="") as handle:
        csv.writer(handle).writerows([("path", "true_label", "given_label"), *rows])


def _train_once(root: Path, name: str, built: list[str], cfg: TrainConfig) -> Path:
    """Train one demo model unless its bundle exists; each model is its own progress step, so its time left
    is its own (the three models' epochs differ in cost by orders of magnitude)."""
    model = root / "models" / (name + SUFFIX)
    if model.is_file():
        return model
    say(f"training {model.name}: {cfg.task} model {cfg.model} for {cfg.epochs} epochs on {cfg.data}")
    with step(f"training {model.name}", cfg.epochs) as advance:
        result = train(cfg, on_epoch=lambda row: advance() if "epoch" in row else None)
    copy_bundle(open_bundle(result.bundle), model, archive=True)  # already parity-checked by train
    built.append(f"runs/{cfg.task}/demo and models/{model.name}")
    return model


def _drifted(root: Path, incoming: Path, built: list[str]) -> Path:
    """The incoming images darker (-40 grey levels) and blurred (sigma 1.5): what a dimmer lamp and a
    defocused lens would do."""
    import cv2
    import numpy as np

    from inspekt.io import load_image, save_image

    target = root / "data" / DRIFTED
    if target.is_dir() and any(target.iterdir()):
        return target
    files = list_images(incoming)
    with step(f"writing data/{DRIFTED}", len(files)) as advance:
        for path in files:
            image = load_image(path, mode="keep").astype(np.float32)
            changed = cv2.GaussianBlur(np.clip(image - 40, 0, 255), (0, 0), 1.5)
            save_image(target / path.relative_to(incoming), np.clip(np.rint(changed), 0, 255).astype(np.uint8))
            advance()
    built.append(f"data/{DRIFTED}")
    return target


def build_demo(workspace: str | Path) -> DemoWorkspace:
    """Build (or reuse) the demo workspace and predict its incoming images with the classifier.

    Args:
        workspace: folder to build in.

    Returns:
        What exists in the workspace, with predictions for ``data/incoming``.
    """
    root, built = Path(workspace), []
    datasets = _datasets(root, built)
    datasets[DRIFTED] = _drifted(root, datasets["incoming"], built)
    runs = {"out": str(root / "runs"), "name": "demo", "exist_ok": True, "imgsz": IMGSZ, "augment": "light"}
    model = _train_once(
        root,
        MODEL_NAME,
        built,
        # lr 0.002 (classification's default is 0.001, for 55 epochs): 20 epochs on the demo's surfaces reached
        # validation accuracy 0.958 with it, 0.948 with 0.001 (both measured with the avgmax head, which 64-px
        # inputs no longer get)
        TrainConfig(task="classify", data=str(datasets["surfaces"]), epochs=EPOCHS, batch=32, lr=0.002, **runs),
    )
    _train_once(
        root,
        SEGMENTER_NAME,
        built,
        TrainConfig(
            task="segment",
            data=str(datasets["surfaces-seg"]),
            model="tiny_unet",
            epochs=SEG_EPOCHS,
            batch=16,
            lr=0.003,
            model_params={"width": 8},
            **runs,
        ),
    )
    _train_once(
        root,
        ANOMALY_NAME,
        built,
        TrainConfig(
            task="anomaly", data=str(datasets["surfaces-mvtec"]), model=ANOMALY_METHOD, epochs=ANOMALY_EPOCHS, **runs
        ),
    )
    predictor = Predictor.load(model)
    predictions = predictor.predict(list_images(datasets["incoming"]))
    return DemoWorkspace(root, datasets, model, dict(predictor.card.metrics), predictions, built)
