"""Annotations out and back in: a dataset exported to COCO / YOLO-seg / Label Studio and imported again
gives the same samples and masks (RLE and brush: pixel-exact; YOLO polygons: within the stated
tolerance), and predictions become pre-annotations with their scores (issue 21)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inspekt.data import open_dataset
from inspekt.data.formats import coco, labelstudio
from inspekt.data.formats.export import export_dataset, write_predictions
from inspekt.data.formats.records import outline, regions
from inspekt.data.masks import read_mask
from inspekt.results import Prediction

# YOLO polygons run along the pixel edges, but a diagonal staircase becomes a straight edge that cuts its
# corner pixels: all pixels together agree to IoU >= 0.95, a one-pixel-thin diagonal scratch alone to >= 0.75.
YOLO_MIN_IOU, YOLO_MIN_IOU_ONE = 0.95, 0.75


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPEKT_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory):
    from inspekt.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("rt") / "data", n=16, size=48, seed=5, layout="segmentation").root


def foreground(sample, shape):
    return read_mask(sample.mask) >= 128 if sample.mask is not None else np.zeros(shape, bool)


@pytest.mark.parametrize("fmt", ["coco", "labelstudio", "yolo"])
def test_export_and_import_back(seg_data, tmp_path, fmt):
    original = open_dataset(seg_data)
    written = export_dataset(original, fmt, tmp_path / fmt)
    back = open_dataset(written.parent if fmt == "yolo" else written)
    assert back.layout == fmt and len(back) == len(original)
    both = either = 0
    for a, b in zip(original.samples, back.samples):
        want = foreground(a, (48, 48))
        got = foreground(b, want.shape)
        if fmt == "yolo":  # YOLO has no image classes; its images are copies
            union = (want | got).sum()
            assert union == 0 or (want & got).sum() / union >= YOLO_MIN_IOU_ONE, a.path
            both, either = both + (want & got).sum(), either + union
        else:
            assert b.path == a.path and b.label == a.label
            assert np.array_equal(want, got), a.path
    assert fmt != "yolo" or both / either >= YOLO_MIN_IOU


def test_outline_follows_pixel_edges():
    mask = np.zeros((12, 12), bool)
    mask[2:6, 3:9] = True
    mask[6:9, 3:5] = True  # an L shape
    (polygon,) = outline(mask)
    from inspekt.data.formats.common import rasterise_polygons

    assert np.array_equal(rasterise_polygons([polygon], 12, 12), mask)


def test_predictions_become_pre_annotations_with_scores(tmp_path):
    from inspekt.io import save_image

    source = save_image(tmp_path / "part.png", np.zeros((20, 30, 3), np.uint8))
    mask = np.zeros((20, 30), np.uint8)
    mask[2:6, 2:8] = 1
    mask[10:15, 20:28] = 1
    heat = np.zeros((20, 30), np.float32)
    heat[mask > 0] = 0.7
    heat[12, 22] = 0.95
    anomaly = Prediction(str(source), "anomaly", label="anomaly", score=0.9, mask=mask, heatmap=heat)
    classified = Prediction(str(source), "classify", label="scratch", score=0.8, scores={"scratch": 0.8, "ok": 0.2})
    doc = write_predictions([anomaly, classified], ("good", "anomaly"), "coco", "run@abc")
    found = [(a["image_id"], a["segmentation"] != [], a.get("score")) for a in doc["annotations"]]
    assert sorted(found) == [
        (1, False, 0.9),
        (1, True, pytest.approx(0.7)),
        (1, True, pytest.approx(0.95)),
        (2, False, 0.8),
    ]
    tasks = write_predictions([anomaly], ("good", "anomaly"), "labelstudio", "run@abc")
    assert tasks[0]["predictions"][0]["model_version"] == "run@abc"
    records = [coco.Record(str(source), 30, 20, mask=mask, classes=("good", "anomaly"))]
    polygons = labelstudio.write(records, masks="polygon")[0]["annotations"][0]["result"]
    assert [r["type"] for r in polygons] == ["polygonlabels", "polygonlabels"]
    assert len(regions(records[0])) == 2


def test_detection_boxes_become_scored_boxes(tmp_path):
    from inspekt.io import save_image

    source = save_image(tmp_path / "part.png", np.zeros((20, 30, 3), np.uint8))
    found = Prediction(str(source), "detect", label="pore", score=0.9)
    found.boxes = [{"class": "pore", "score": 0.9, "box": [3, 4, 13, 10], "area_px": 60}]
    (ann,) = [a for a in write_predictions([found], ("pore",), "coco", "m@1")["annotations"] if a.get("bbox")]
    assert ann["bbox"] == [3, 4, 10, 6] and ann["score"] == 0.9
    (task,) = write_predictions([found], ("pore",), "labelstudio", "m@1")
    (box,) = [r for r in task["predictions"][0]["result"] if r["type"] == "rectanglelabels"]
    assert (
        box["score"] == 0.9 and box["value"]["x"] == pytest.approx(10) and box["value"]["height"] == pytest.approx(30)
    )


def test_coco_category_ids_follow_the_model_and_match_the_dataset_export(tmp_path):
    """A detector's COCO predictions number its classes in the model's order whatever the images show
    (ids followed first appearance), hold box annotations only (no shapeless image label), and use the ids
    of its dataset's COCO export, so the two can be scored against each other."""
    from inspekt.data import open_dataset
    from inspekt.data.synth import write_dataset
    from inspekt.io import save_image

    source = save_image(tmp_path / "part.png", np.zeros((20, 30, 3), np.uint8))
    classes = ("lop", "pore", "scratch")  # a detector's: its box labels, sorted

    def detection(*labels: str) -> Prediction:
        found = Prediction(str(source), "detect", label=labels[0] if labels else "ok", score=0.9)
        found.boxes = [{"class": c, "score": 0.9, "box": [3, 4, 13, 10], "area_px": 60} for c in labels]
        return found

    for shown in (["scratch", "pore"], ["pore"], []):
        doc = write_predictions([detection(*shown), detection()], classes, "coco", "m@1")
        assert [(c["id"], c["name"]) for c in doc["categories"]] == [(1, "lop"), (2, "pore"), (3, "scratch")]
        assert all(len(a["bbox"]) == 4 for a in doc["annotations"]) and len(doc["annotations"]) == len(shown)
    ds = open_dataset(write_dataset(tmp_path / "boxes", n=24, size=48, seed=0, layout="boxes").root)
    exported = json.loads(export_dataset(ds, "coco", tmp_path / "gt").read_text())
    names = sorted({b.label for s in ds.samples for b in s.boxes or ()})
    assert [c["name"] for c in exported["categories"]] == names  # box classes only, sorted: the detector's ids
    assert all("bbox" in a for a in exported["annotations"])


def test_image_labels_survive_an_export_of_a_dataset_read_from_a_format_and_leave_detections(tmp_path):
    """A classification dataset read back from Label Studio (whose samples carry an empty boxes tuple) keeps
    its labels through a COCO export; a detection's Label Studio result holds rectangles, no image choice."""
    from inspekt.data.synth import write_dataset
    from inspekt.io import save_image

    classes = write_dataset(tmp_path / "classes", n=12, size=32, seed=0).root
    read_back = open_dataset(export_dataset(open_dataset(classes), "labelstudio", tmp_path / "ls"))
    exported = json.loads(export_dataset(read_back, "coco", tmp_path / "coco").read_text())
    assert len(exported["annotations"]) == 12 and {c["name"] for c in exported["categories"]} == set(
        open_dataset(classes).classes
    )
    source = save_image(tmp_path / "part.png", np.zeros((20, 30, 3), np.uint8))
    found = Prediction(str(source), "detect", label="pore", score=0.9)
    found.boxes = [{"class": "pore", "score": 0.9, "box": [3, 4, 13, 10], "area_px": 60}]
    (task,) = write_predictions([found], ("pore",), "labelstudio", "m@1")
    assert [r["type"] for r in task["predictions"][0]["result"]] == ["rectanglelabels"]
