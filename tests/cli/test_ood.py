"""Out-of-distribution inputs (issue 19): a picture unlike the training images is flagged, per image,
by the one Predictor, so `inspekt predict` (JSON and table) and the REST API say so with a score."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from conftest import png_bytes


def cli(*args) -> subprocess.CompletedProcess:
    exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
    env = os.environ | {"COLUMNS": "160"}
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


def unlike_images() -> dict[str, np.ndarray]:
    """Pictures nothing like the synthetic grey surfaces: colour noise and a large flat red image."""
    rng = np.random.default_rng(0)
    return {
        "noise.png": rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
        "red.png": np.full((200, 200, 3), (230, 20, 20), np.uint8),
    }


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    """New images from the training images' source (another seed): in distribution, never seen."""
    from inspekt.data.synth import write_dataset

    root = write_dataset(tmp_path_factory.mktemp("fresh") / "d", n=24, size=48, seed=11).root
    return sorted(str(p) for p in root.rglob("*.png"))


@pytest.fixture(scope="module")
def strange(tmp_path_factory) -> list[str]:
    folder = tmp_path_factory.mktemp("strange")
    for name, array in unlike_images().items():
        Image.fromarray(array).save(folder / name)
    return sorted(str(p) for p in folder.iterdir())


def test_bundle_reference_carries_calibrated_training_embeddings(trained):
    novelty = json.loads((trained.bundle / "reference.json").read_text())["novelty"]
    assert novelty["k"] >= 1 and novelty["threshold"] > 0 and novelty["percentile"] == 99.0
    assert len(novelty["embeddings"]) > 10


def test_predict_json_flags_unlike_images_and_not_same_source_ones(trained, fresh, strange):
    rows = [json.loads(line) for line in cli("predict", trained.bundle, *fresh, *strange, "--json").stdout.splitlines()]
    by_name = {os.path.basename(r["path"]): r for r in rows}
    assert by_name["noise.png"]["ood"]["unlike_training"] is True, by_name["noise.png"]
    assert by_name["noise.png"]["ood"]["score"] > 1.0
    same_source = [r for r in rows if r["path"] in fresh]
    typical = sorted(r["ood"]["score"] for r in same_source)[len(same_source) // 2]
    assert by_name["red.png"]["ood"]["score"] > typical, by_name["red.png"]  # a tiny model: further, if not flagged
    assert all(set(r["ood"]) == {"score", "unlike_training"} for r in same_source)
    flagged = sum(r["ood"]["unlike_training"] for r in same_source)
    assert flagged <= len(same_source) // 4, [r["ood"] for r in same_source]  # a tiny 8-epoch model: a few


def test_predict_table_says_unlike_the_training_images_with_a_score(trained, fresh, strange):
    proc = cli("predict", trained.bundle, fresh[0], *strange)
    assert "unlike the training images (score" in proc.stdout
    assert "unlike the training images" in proc.stderr  # the summary line counts them


def test_bundle_without_novelty_reference_predicts_as_before(trained, strange, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(trained.bundle, bundle)
    reference = json.loads((bundle / "reference.json").read_text())
    del reference["novelty"]
    (bundle / "reference.json").write_text(json.dumps(reference))
    [row, _] = [json.loads(line) for line in cli("predict", bundle, *strange, "--json").stdout.splitlines()]
    assert "ood" not in row and row["label"]
    (bundle / "reference.json").write_text("{damaged")
    [row, _] = [json.loads(line) for line in cli("predict", bundle, *strange, "--json").stdout.splitlines()]
    assert "ood" not in row and row["label"]
    (bundle / "reference.json").unlink()
    assert "unlike" not in cli("predict", bundle, *strange).stdout


def test_api_flags_unlike_images_and_not_a_same_source_one(trained, synth_classes):
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    from fastapi.testclient import TestClient

    from inspekt.api import ServeSettings, create_app

    same = next((synth_classes / "ok").iterdir())
    files = [("files", (name, png_bytes(array), "image/png")) for name, array in unlike_images().items()]
    files.append(("files", (same.name, same.read_bytes(), "image/png")))
    with TestClient(create_app(ServeSettings(models=(f"clf={trained.bundle}",)))) as client:
        answer = client.post("/v1/models/clf/predict", files=files)
    assert answer.status_code == 200, answer.text
    rows = {r["path"]: r for r in answer.json()["predictions"]}
    assert rows["noise.png"]["ood"]["unlike_training"] is True and rows["noise.png"]["ood"]["score"] > 1.0
    assert rows["red.png"]["ood"]["score"] > rows[same.name]["ood"]["score"]
    assert rows[same.name]["ood"]["unlike_training"] is False


def test_api_and_json_say_the_time_is_a_batch_average(trained, synth_classes, strange):
    """Every row used to show the same batch-average ms as if it were that image's own time."""
    pytest.importorskip("fastapi", reason="the serve extra (fastapi) is not installed")
    from fastapi.testclient import TestClient

    from inspekt.api import ServeSettings, create_app

    files = [("files", (name, png_bytes(array), "image/png")) for name, array in unlike_images().items()]
    with TestClient(create_app(ServeSettings(models=(f"clf={trained.bundle}",)))) as client:
        rows = client.post("/v1/models/clf/predict", files=files).json()["predictions"]
    for row in rows:
        assert row["batch_images"] == 2
        assert row["batch_ms"] == pytest.approx(row["time_ms"] * 2, abs=0.01)
    [row] = [json.loads(line) for line in cli("predict", trained.bundle, strange[0], "--json").stdout.splitlines()]
    assert row["batch_images"] == 1 and row["batch_ms"] == pytest.approx(row["time_ms"], abs=0.01)


def test_an_image_far_from_the_training_sizes_is_flagged_with_the_reason(trained, fresh, tmp_path):
    """1x1 and 6000x4000 pictures still get a confident label once resized: their size alone says they are
    unlike the 48x48 training images; sizes near the training images' are not flagged for it."""
    from inspekt.engine.predictor import Predictor

    sizes = {"dot.png": (1, 1), "wide.png": (48, 480), "large.png": (4000, 6000), "close.png": (96, 96)}
    for name, (h, w) in sizes.items():
        Image.fromarray(np.full((h, w, 3), 128, np.uint8)).save(tmp_path / name)
    files = [str(tmp_path / name) for name in sizes]
    found = {os.path.basename(p.source): p for p in Predictor.load(trained.bundle).predict(files + fresh[:4])}
    assert found["dot.png"].ood["why"] == "1x1 px; the training images were about 48 px a side"
    assert found["large.png"].ood["why"].startswith("6000x4000 px") and found["large.png"].ood["score"] > 20
    assert found["wide.png"].ood["unlike_training"] and "480x48 px" in found["wide.png"].ood["why"]  # aspect 10:1
    assert "why" not in found["close.png"].ood  # twice the side: not far enough to say so by size
    assert all("why" not in found[os.path.basename(f)].ood for f in fresh[:4])
    assert "unlike the training images (score" in found["dot.png"].ood_note() and "1x1 px" in repr(found["dot.png"])
    tiled = Predictor.load(trained.bundle)  # a tiled model sees windows at the training scale: no size check
    tiled.card = tiled.card.model_copy(update={"input": tiled.card.input.model_copy(update={"resize": "tile"})})
    assert tiled.sizes is None and Predictor.load(trained.bundle).sizes is not None


def test_a_model_without_embeddings_flags_sizes_too(tmp_path):
    """The size check needs only the reference's profile: an anomaly model called a 1x1 picture good."""
    from inspekt.data.synth import write_dataset
    from inspekt.engine.predictor import Predictor
    from inspekt.engine.trainer import train

    data = write_dataset(tmp_path / "mv", n=24, size=32, seed=2, layout="mvtec").root
    result = train(task="anomaly", data=str(data), model="padim", imgsz=32, out=str(tmp_path / "runs"), threads=1)
    Image.fromarray(np.full((1, 1, 3), 128, np.uint8)).save(tmp_path / "dot.png")
    good = next((data / "test" / "good").iterdir())
    dot, same = Predictor.load(result.bundle).predict([tmp_path / "dot.png", good])
    assert dot.ood["unlike_training"] and dot.ood["why"].startswith("1x1 px")
    assert same.ood is None  # no embeddings to compare, and a training size
    rows = list(csv.DictReader(io.StringIO(cli("predict", result.bundle, tmp_path / "dot.png", good, "--csv").stdout)))
    flagged = [(os.path.basename(r["path"]), r["unlike_training"]) for r in rows]
    assert flagged == [("dot.png", "True"), (good.name, "False")]  # the column on a model without embeddings
