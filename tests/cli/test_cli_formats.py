"""Annotations in and out through the real CLI: data import / export, and predictions written back as
COCO and Label Studio pre-annotations (issue 21)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from inspekt.cli import app
from inspekt.data import open_dataset
from inspekt.data.formats import brush, labelstudio
from inspekt.data.masks import read_mask

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPEKT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory):
    from inspekt.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("seg") / "data", n=24, size=48, seed=2, layout="segmentation").root


@pytest.fixture(scope="module")
def seg_bundle(seg_data, tmp_path_factory):
    from inspekt.engine.trainer import train

    out = tmp_path_factory.mktemp("runs")
    cfg = dict(task="segment", data=str(seg_data), model="tiny_unet", model_params={"width": 4, "depth": 3})
    cfg |= dict(epochs=2, imgsz=32, batch=8, lr=0.01, augment="none", warmup_epochs=0, threads=1, out=str(out))
    return train(**cfg).bundle


def test_export_then_import_gives_the_same_samples_and_masks(seg_data, tmp_path):
    result = run("data", "export", seg_data, "--format", "coco", "--out", tmp_path / "coco")
    assert result.exit_code == 0, result.output
    result = run("data", "import", tmp_path / "coco" / "annotations.json", "--out", tmp_path / "back", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["format"] == "coco" and summary["images"] == 24 and summary["problems"] == []
    original, back = open_dataset(seg_data), open_dataset(tmp_path / "back" / "labels.csv")
    assert [s.path.resolve() for s in back.samples] == [s.path.resolve() for s in original.samples]
    assert [s.label for s in back.samples] == [s.label for s in original.samples]
    for a, b in zip(original.samples, back.samples):
        fg = read_mask(a.mask) >= 128
        assert np.array_equal(fg, read_mask(b.mask) >= 128 if b.mask else np.zeros_like(fg)), a.path
        assert b.boxes is not None and len(b.boxes) >= int(fg.any())


def test_import_reports_bad_entries_and_skips_them(seg_data, tmp_path):
    run("data", "export", seg_data, "--format", "labelstudio", "--out", tmp_path / "ls")
    tasks = json.loads((tmp_path / "ls" / "tasks.json").read_text())
    tasks[0]["data"]["image"] = "gone.png"
    (tmp_path / "ls" / "tasks.json").write_text(json.dumps(tasks))
    result = run("data", "import", tmp_path / "ls" / "tasks.json", "--format", "labelstudio", "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    assert "problems (entries skipped or clipped): 1" in result.output and "gone.png" in result.output
    with open(tmp_path / "o" / "labels.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 23
    info = run("data", "info", tmp_path / "ls" / "tasks.json")
    assert info.exit_code == 0 and "annotation problems (skipped or clipped): 1" in info.output


def test_import_of_a_broken_file_is_one_line_with_status_2(tmp_path):
    (tmp_path / "a.json").write_text("{oops")
    result = run("data", "import", tmp_path / "a.json", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "not valid JSON" in result.output
    result = run("data", "import", tmp_path / "a.json", "--format", "pascal", "--out", tmp_path / "o")
    assert result.exit_code == 2 and "unknown annotation format 'pascal'" in result.output


def test_predict_format_coco_is_read_by_pycocotools(seg_bundle, seg_data, tmp_path):
    from pycocotools.coco import COCO

    images = sorted((seg_data / "images").rglob("*.png"))[:6]
    result = run("predict", seg_bundle, *images, "--format", "coco")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    (tmp_path / "pred.json").write_text(result.stdout)
    coco = COCO(str(tmp_path / "pred.json"))  # the reference reader accepts it
    assert len(coco.getImgIds()) == 6 and seg_bundle.parent.name in doc["info"]["description"]
    for ann in doc["annotations"]:
        assert "score" in ann
        if ann["segmentation"]:
            assert coco.annToMask(ann).sum() == ann["area"]


def test_predict_format_labelstudio_has_predictions_with_model_version(trained, synth_classes, seg_bundle, seg_data):
    images = sorted(synth_classes.rglob("*.png"))[:3]
    result = run("predict", trained.bundle, *images, "--format", "labelstudio")
    assert result.exit_code == 0, result.output
    tasks = json.loads(result.stdout)
    assert len(tasks) == 3
    for task in tasks:
        (prediction,) = task["predictions"]
        digest = json.loads((trained.bundle / "card.json").read_text())["digests"]["model.onnx"]
        digest = digest.removeprefix("sha256:")[:12]  # the graph's hash digits (the algorithm's name was 7 of 12)
        assert len(digest) == 12 and int(digest, 16) >= 0
        assert prediction["model_version"] == f"{trained.bundle.parent.name}@{digest}"
        (choice,) = prediction["result"]
        assert choice["type"] == "choices" and 0 <= choice["score"] <= 1
    masks = sorted((seg_data / "images").rglob("*.png"))[:4]
    tasks = json.loads(run("predict", seg_bundle, *masks, "--format", "labelstudio").stdout)
    config = labelstudio.label_config(["defect", "ok"])
    for task in tasks:
        for result in task["predictions"][0]["result"]:
            assert f'name="{result["from_name"]}"' in config
            if result["type"] == "brushlabels":
                decoded = brush.decode(result["value"]["rle"], result["original_height"], result["original_width"])
                assert decoded.any()


def test_predict_format_refuses_other_names_and_json_together(trained, synth_classes):
    image = next(synth_classes.rglob("*.png"))
    assert run("predict", trained.bundle, image, "--format", "voc").exit_code == 2
    assert run("predict", trained.bundle, image, "--format", "coco", "--json").exit_code == 2
