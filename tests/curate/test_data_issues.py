"""``inspekt data issues`` end to end: cross-validation with the real trainer finds planted wrong
labels, a bad image is skipped and named, the CSV and HTML are written; ``--model`` warns when the
bundle trained on the very images it judges."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inspekt.curate.issues import DataIssue, read_issues_csv

# Enough for a tiny CNN to tell a bright surface from a dark one in two folds, in seconds.
QUICK = ["epochs=16", "imgsz=32", "batch=4", "lr=0.01", "warmup_epochs=0", "augment=none", "threads=1"]
QUICK += ["model_params.width=8"]


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, set[str]]:
    """Synthetic surfaces as two classes, "ok" and "dark" (the same kind of surface at a third of the
    brightness), 24 each; two images sit in the wrong class folder, and one file is not an image."""
    from inspekt.data.synth import write_dataset

    tmp = tmp_path_factory.mktemp("issues")
    source = sorted(write_dataset(tmp / "src", n=192, size=32, seed=0, color="grey").root.glob("ok/*.png"))
    root = tmp / "data"
    for name, files, factor in (("ok", source[:24], 1.0), ("dark", source[24:48], 0.3)):
        (root / name).mkdir(parents=True)
        for f in files:
            image = np.asarray(Image.open(f).convert("L"), dtype=np.float32) * factor
            Image.fromarray(image.astype(np.uint8)).save(root / name / f"{name}_{f.name}")
    wrong = {root / "ok" / "ok_ok_0000.png": root / "dark", root / "dark" / "dark_ok_0030.png": root / "ok"}
    moved = set()
    for path, folder in wrong.items():
        moved.add(str(path.rename(folder / path.name)))
    (root / "ok" / "broken.png").write_bytes(b"not a png")
    return root, moved


@pytest.mark.slow
def test_cli_finds_planted_labels_skips_bad_image_and_writes_csv_and_html(planted, tmp_path):
    root, moved = planted
    csv_path, html_path = tmp_path / "issues.csv", tmp_path / "issues.html"
    command = [sys.executable, "-m", "inspekt", "data", "issues", str(root), "--folds", "2", "--json"]
    command += ["--csv", str(csv_path), "--html", str(html_path), *QUICK]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    labels = [i for i in report["issues"] if i["kind"] == "label"]
    # Each planted image is alone in its class pair: cleanlab's count may round one down, so at least
    # one is flagged, first, and nothing but planted images is.
    assert labels and labels[0]["rank"] == 1 and {i["path"] for i in labels} <= moved, labels[:4]
    assert all(i["suggested"] == ("ok" if "/dark/" in i["path"] else "dark") for i in labels)
    assert [s["path"] for s in report["skipped"]] == [str(root / "ok" / "broken.png")]
    assert "2-fold cross-validation" in report["model"] and report["summary"]["balanced_accuracy"] > 0.8
    assert read_issues_csv(csv_path) == [DataIssue(**i) for i in report["issues"]]
    page = html_path.read_text(encoding="utf-8")
    assert page.count("data:image/jpeg;base64,") == len(report["issues"])
    assert "broken.png" in page and "http" not in page.replace("http-equiv", "")


@pytest.mark.slow
def test_model_trained_on_the_images_is_flagged(trained, synth_classes):
    """A bundle judging the images it was trained on says so and judges only the others (the 16 it was
    validated on: its record of the images it saw), and names itself as the judge."""
    from inspekt.curate import find_issues

    report = find_issues(synth_classes, model=trained.bundle)
    assert f"{trained.bundle} trained on 64 of these images: only the other 16 are judged" in report.notes
    assert str(trained.bundle) in report.model and "model.onnx sha256:" in report.model
    assert report.summary["labels_judged"] == 16


@pytest.mark.slow
def test_a_model_that_does_not_fit_the_data_is_refused_before_judging(trained, planted, tmp_path):
    """As ``inspekt eval`` refuses them: a classifier whose classes are not the data's labels (it judged
    magnetic_tile with a lop/ok/pore/scratch model and ranked duplicates and outliers), and a segmenter on
    data without masks (it flagged every image it found a defect in as a mask issue)."""
    from inspekt.curate import find_issues
    from inspekt.data.synth import write_dataset
    from inspekt.engine.trainer import train
    from inspekt.errors import DatasetError

    root, _ = planted  # labels ok and dark
    unknown = r"label\(s\) dark are not classes of the model \(lop, ok, pore, scratch\); rename the folders or CSV"
    with pytest.raises(DatasetError, match=unknown):
        find_issues(root, model=trained.bundle)
    from typer.testing import CliRunner

    from inspekt.cli import app

    said = CliRunner().invoke(app, ["data", "issues", str(root), "--model", str(trained.bundle)])  # the front door
    assert said.exit_code == 2 and "dark are not classes of the model" in " ".join(said.output.split())
    assert "Traceback" not in said.output
    seg = write_dataset(tmp_path / "seg", n=16, size=32, seed=1, layout="segmentation").root
    options = {"model": "tiny_unet", "model_params": {"width": 4, "depth": 3}, "imgsz": 32, "batch": 8}
    segmenter = train(
        task="segment", data=str(seg), epochs=1, augment="none", threads=1, out=str(tmp_path / "runs"), **options
    ).bundle
    with pytest.raises(DatasetError, match="no mask files, so there are no masks to compare a segmentation model"):
        find_issues(root, model=segmenter)
    assert find_issues(seg, model=segmenter).task == "segment"  # with its masks it judges
