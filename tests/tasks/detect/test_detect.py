"""Detection on synthetic planted boxes: targets and decoding, boxes from masks and annotations,
box-aware augmentation, COCO metrics against hand-counted cases, and training -> export parity ->
predict -> evaluate through the Python API and the CLI (boxes found, counted and placed)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from inspekt.augment import build_augmenter
from inspekt.cli import app
from inspekt.data import open_dataset
from inspekt.data.dataset import Box, Sample
from inspekt.engine.evaluator import evaluate
from inspekt.engine.predictor import Predictor
from inspekt.errors import DatasetError, InspektError
from inspekt.io import save_image
from inspekt.tasks import get_task, tasks_for
from inspekt.tasks.detect.boxes import BoxRule, box_rule, iou_matrix, match
from inspekt.tasks.detect.metrics import at_threshold, coco_map
from inspekt.tasks.detect.predict import Maps, decode
from inspekt.tasks.detect.train import detection_sanity, encode_targets
from inspekt.transforms import Geometry

runner = CliRunner()


def test_targets_decode_back_to_their_boxes():
    boxes = np.array([[10, 12, 30, 40, 0], [60, 60, 64, 66, 1], [5, 90, 120, 100, 0]], np.float32)
    targets = encode_targets(boxes, (128, 128), 2)
    found = decode(Maps(targets[:2], targets[2:6], Geometry((128, 128), 1, 1, 0, 0)), 0.5)
    assert len(found) == 3
    assert iou_matrix(found, boxes).max(axis=1).min() > 0.999
    assert sorted(found[:, 4].tolist()) == [0, 0, 1]


def test_decode_maps_back_through_the_resize_geometry():
    """A box found in a 64x64 input of a 256x128 (HxW) image lands at the original pixels."""
    boxes = np.array([[16, 16, 32, 48, 0]], np.float32)  # input pixels
    targets = encode_targets(boxes, (64, 64), 1)
    geometry = Geometry((256, 128), 64 / 256, 64 / 128, 0, 0)
    (found,) = decode(Maps(targets[:1], targets[1:5], geometry), 0.5)
    np.testing.assert_allclose(found[:4], [32, 64, 64, 192], atol=1e-4)


def test_boxes_from_masks_and_from_annotations(tmp_path):
    mask = np.zeros((40, 50), np.uint8)
    mask[5:10, 3:9] = 255
    mask[20:35, 30:48] = 255
    save_image(tmp_path / "images" / "a.png", np.zeros((40, 50), np.uint8))
    save_image(tmp_path / "masks" / "a.png", mask)
    ds = open_dataset(tmp_path)
    rule = box_rule(ds)
    found = rule.boxes(ds.samples[0], (40, 50))
    assert sorted(found[:, :4].tolist()) == [[3, 5, 9, 10], [30, 20, 48, 35]]
    annotated = BoxRule(("pore",))
    sample = Sample(tmp_path / "a.png", boxes=(Box("pore", -5, 2, 20, 60),))
    np.testing.assert_array_equal(annotated.boxes(sample, (40, 50)), [[0, 2, 20, 40, 0]])  # clipped
    with pytest.raises(DatasetError, match="'crack'.*pore"):
        annotated.boxes(Sample(tmp_path / "a.png", boxes=(Box("crack", 0, 0, 5, 5),)), (40, 50))


def test_synth_boxes_layout_is_a_detection_dataset(tmp_path):
    from inspekt.data.synth import write_dataset

    root = write_dataset(tmp_path / "d", n=8, size=64, layout="boxes", seed=1).root
    assert root == tmp_path / "d" / "labels.csv"  # what to give --data
    ds = open_dataset(root)
    assert "detect" in tasks_for(ds)
    by_label = {s.label: s.boxes for s in ds.samples}
    assert by_label["ok"] == ()
    assert by_label["pore"] and all(b.label == "pore" and b.area > 0 for b in by_label["pore"])
    from inspekt.tasks.detect.boxes import box_rule

    assert box_rule(open_dataset(root.parent)).classes == box_rule(ds).classes  # the folder reads its labels.csv
    root.rename(root.with_name("boxes.csv"))  # a CSV of another name is not read for the folder, only named
    (root.parent / "a_notes.csv").write_text("path,label\nimages/x.png,ok\n")  # first by name, but no boxes
    with pytest.raises(DatasetError, match=r"d/boxes.csv holds boxes beside the images: give --data .*d/boxes.csv"):
        box_rule(open_dataset(root.parent))  # the folder, not its CSV: the error points at the CSV with boxes


def test_flip_moves_the_boxes_with_the_image():
    augment = build_augmenter("none", (32, 32), boxes=True)
    image = np.zeros((32, 32), np.uint8)
    assert augment(image, boxes=np.array([[1, 2, 5, 6, 0]], np.float32))[1].tolist() == [[1, 2, 5, 6, 0]]
    import albumentations as A

    from inspekt.augment import Augmenter, _box_params

    flip = Augmenter(A.Compose([A.HorizontalFlip(p=1)], **_box_params(True)))
    image[2:6, 1:5] = 255
    moved, boxes = flip(image, boxes=np.array([[1, 2, 5, 6, 3]], np.float32))
    np.testing.assert_allclose(boxes, [[27, 2, 31, 6, 3]])
    assert moved[2:6, 27:31].min() == 255


def test_coco_metrics_on_counted_cases():
    truth = [np.array([[0, 0, 10, 10, 0], [20, 20, 30, 30, 0]], np.float32), np.zeros((0, 5), np.float32)]
    perfect = [np.array([[0, 0, 10, 10, 0, 0.9], [20, 20, 30, 30, 0, 0.8]], np.float32), np.zeros((0, 6), np.float32)]
    assert coco_map(truth, perfect, ("pore",))["map50"] == pytest.approx(1.0)
    # one right box, one box off by half its size (IoU 1/3) and a false box on the negative image
    found = [
        np.array([[0, 0, 10, 10, 0, 0.9], [25, 20, 35, 30, 0, 0.8]], np.float32),
        np.array([[0, 0, 5, 5, 0, 0.95]], np.float32),
    ]
    metrics = coco_map(truth, found, ("pore",))
    # ranked: false (0.95), true (0.9), false (0.8): recall 0.5 reached at precision 0.5 -> AP50 = 0.5 * 51/101
    assert metrics["map50"] == pytest.approx(0.5 * 51 / 101, abs=1e-6)
    counted = at_threshold(truth, found, 0.85)
    assert (counted["tp"], counted["fp"], counted["fn"]) == (1, 1, 1)
    assert counted["image_precision"] == 0.5 and counted["image_recall"] == 1.0
    hit, seen = match(found[0], truth[0])
    assert hit.tolist() == [True, False] and seen.tolist() == [True, False]


def _validation(truth, found, threshold):
    """The validation figures the sanity check reads, from the real metric functions."""
    seen = at_threshold(truth, found, threshold)
    return {"map50": coco_map(truth, found, ("pore",))["map50"], "threshold": threshold} | {
        key: seen[key] for key in ("box_recall", "escape_rate", "false_reject_rate")
    }


def test_detection_sanity_fails_a_detector_that_guesses_though_its_map_is_above_0():
    boxed = [np.array([[i, i, i + 10, i + 10, 0]], np.float32) for i in (0, 10, 20)]
    truth = boxed + [np.zeros((0, 5), np.float32)] * 3
    right = [np.c_[t[:, :5], np.full(len(t), 0.9)].astype(np.float32) for t in truth]
    assert detection_sanity(_validation(truth, right, 0.5)).ok
    # a big box on every image (scored high) and the true ones scored low: mAP@0.5 above 0 by its
    # low-scored boxes, but at the threshold every image, with boxes or not, is flagged
    everywhere = [
        np.r_[np.array([[0, 0, 60, 60, 0, 0.95]]), np.c_[t[:, :5], np.full(len(t), 0.1)]].astype(np.float32)
        for t in truth
    ]
    figures = _validation(truth, everywhere, 0.5)
    assert figures["map50"] > 0 and figures["box_recall"] == 0
    sanity = detection_sanity(figures)
    assert not sanity.ok and "at its score threshold 0.5 it finds none" in sanity.why
    assert "flags 100% of the validation images without boxes and 100% of those with boxes" in sanity.why
    silent = [np.zeros((0, 6), np.float32)] * 6  # flags nothing: said once, not also "chance"
    assert (
        detection_sanity(_validation(truth, silent, 0.5)).why == "it finds none of the validation boxes (mAP@0.5 = 0)"
    )
    # no box to find in the validation images: nothing to judge
    assert detection_sanity(_validation(truth[3:], silent[3:], 0.5)) is None


@pytest.mark.slow
def test_trained_detector_finds_counts_and_places_planted_boxes(detect_trained, planted_boxes):
    trained = detect_trained
    root, truth = planted_boxes
    assert trained.parity.ok and trained.metrics["val_map50"] > 0.5
    assert trained.sanity is not None and trained.sanity.ok and trained.metrics["val_box_f1"] > 0.5
    card = Predictor.load(trained.bundle).card
    assert card.task == "detect" and card.classes == ("defect",) and card.outputs == ("heatmap", "boxes")
    names = sorted(truth)[:20]
    onnx = Predictor.load(trained.bundle).predict([root / "images" / n for n in names])
    torch_ = Predictor.load(trained.bundle, backend="torch").predict([root / "images" / n for n in names])
    right_count, ious = 0, []
    for name, a, b in zip(names, onnx, torch_):
        assert [x["class"] for x in a.boxes] == [x["class"] for x in b.boxes]  # the same boxes in both backends
        for x, y in zip(a.boxes, b.boxes):
            assert iou_matrix(np.array([x["box"]]), np.array([y["box"]]))[0, 0] >= 0.999
            assert x["score"] == pytest.approx(y["score"], rel=1e-4, abs=1e-5)
        true = np.array(truth[name], np.float32).reshape(-1, 4)
        right_count += len(a.boxes) == len(true) == a.extra["counts"]["defect"]
        if len(true) and a.boxes:
            ious.extend(iou_matrix(true, np.array([x["box"] for x in a.boxes])).max(axis=1).tolist())
        assert a.to_dict()["boxes"] == a.boxes and (a.extra["verdict"] == "defect") == bool(a.boxes)
    assert right_count >= 16, f"{right_count}/20 images with the right number of boxes"
    assert np.median(ious) >= 0.7


@pytest.mark.slow
def test_evaluate_and_cli_on_the_trained_detector(detect_trained, planted_boxes, tmp_path):
    trained = detect_trained
    root, _ = planted_boxes
    result = evaluate(trained.bundle, root, split="all")
    assert result.metrics["map50"] > 0.5 and result.metrics["n_images"] == 60
    assert result.metrics["per_class"][0]["boxes"] == sum(r["true_boxes"] for r in result.rows)
    written = get_task("detect").write_plots(result, None, None, tmp_path / "plots", limit=3)
    assert written[0].name == "pr_curves.png" and all(p.is_file() for p in written)
    out = runner.invoke(app, ["predict", str(trained.bundle), str(root / "images"), "--json"])
    assert out.exit_code == 0, out.output
    rows = [json.loads(line) for line in out.stdout.splitlines() if line.strip()]  # JSON lines
    assert len(rows) == 60 and all("boxes" in r and "counts" in r for r in rows)
    with pytest.raises(InspektError, match=r"--threshold 5 must be a box score in \[0, 1\]$"):
        Predictor.load(trained.bundle, threshold=5)  # a detector's own words, not a probability's or anomaly's
    saved = tmp_path / "saved" / "run" / "1"
    refused = runner.invoke(
        app, ["predict", str(trained.bundle), str(root / "images"), "--explain", "--save-dir", saved]
    )
    assert refused.exit_code == 2 and "Grad-CAM" in refused.output
    assert not (tmp_path / "saved").exists()  # the folders made for it are gone again, parents included
    (tmp_path / "broken.png").write_bytes(b"not a png")
    unread = runner.invoke(app, ["predict", str(trained.bundle), str(tmp_path / "broken.png"), "--save-dir", saved])
    assert unread.exit_code == 2 and "could be read" in unread.output and not (tmp_path / "saved").exists()
    kept = tmp_path / "kept"
    kept.mkdir()
    assert runner.invoke(
        app, ["predict", str(trained.bundle), str(tmp_path / "broken.png"), "--save-dir", kept]
    ).exit_code
    assert kept.is_dir()  # a folder that was there before stays
    shown = runner.invoke(app, ["eval", str(trained.bundle), "--data", str(root), "--split", "all"])
    assert shown.exit_code == 0, shown.output
    assert "mAP@0.5" in shown.output and "AP@0.5" in shown.output
    import shutil

    copy = shutil.copytree(trained.bundle, tmp_path / "copy")
    stored = runner.invoke(
        app, ["eval", str(copy), "--data", str(root), "--split", "all", "--set-threshold", "best-f1"]
    )
    assert stored.exit_code == 0, stored.output
    best = get_task("detect").choose_threshold(result, "best-f1")
    assert Predictor.load(copy).card.postprocess.threshold == pytest.approx(best)
    import inspekt  # the same from Python (the README's line)

    again = shutil.copytree(trained.bundle, tmp_path / "again")
    card = inspekt.save_threshold(again, "best-f1", result=result)
    assert card.postprocess.threshold == pytest.approx(best) == Predictor.load(again).card.postprocess.threshold
    with pytest.raises(inspekt.InspektError, match=r"pass result=inspekt.evaluate\(bundle, DATA\)"):
        inspekt.save_threshold(again, "best-f1")
    from dataclasses import replace  # a threshold chosen on another model's scores is refused

    with pytest.raises(inspekt.InspektError, match="result= evaluated /gone/m.inspekt, not .*again"):
        inspekt.save_threshold(again, "best-f1", result=replace(result, bundle="/gone/m.inspekt"))
    with pytest.raises(inspekt.InspektError, match="result= is a classify evaluation; .*again is a detect model"):
        inspekt.save_threshold(again, "best-f1", result=replace(result, task="classify"))


def test_int8_detector_is_judged_by_map_and_box_agreement(detect_trained, planted_boxes, tmp_path, monkeypatch):
    """export --int8 for a detector: calibrated through the Predictor, judged by the evaluation's mAP@0.5
    and box F1 and by how far its boxes agree with fp32's (the speed is fixed: it depends on this CPU)."""
    from inspekt.bundle import open_bundle
    from inspekt.engine.quantize import AccuracyDropError, quantize_bundle

    monkeypatch.setattr("inspekt.engine.quantize.measure_speedup", lambda fp32, int8, images: {1: 1.2, 16: 1.1})
    cwd = tmp_path / "cwd"  # quantising leaves nothing where it runs (ORT's symbolic shape inference did)
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    root, truth = planted_boxes
    args = ["export", str(detect_trained.bundle), "--int8", "--calib", str(root), "--out", str(tmp_path / "q.inspekt")]
    # judged on the 12 images the detector never trained on (the bundle's record), where one box of about 20
    # is 5 points of box F1; calibrated on the 48 it trained on
    out = runner.invoke(app, [*args, "--max-drop", "0.1", "--min-agreement", "0.8", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert set(report["quality"]) == {"map50", "box_f1"} and report["agreeing"] == "boxes"
    assert report["n_images"] == 12 and report["n_calib"] == 48 and report["agreement"] >= 0.8
    fp32_map, int8_map = report["quality"]["map50"]
    assert fp32_map > 0.5 and int8_map >= fp32_map - 0.05
    card = open_bundle(report["path"]).card
    assert card.precision == "int8" and card.metrics["int8_map50"] == round(int8_map, 4)
    names = sorted(truth)[:10]
    found = Predictor.load(report["path"]).predict([root / "images" / n for n in names])
    assert sum(len(p.boxes) for p in found) >= sum(len(truth[n]) for n in names) // 2  # the INT8 model finds boxes
    # calibrated on blank frames only (and the input quantised too, as on VNNI CPUs), the boxes' pixels are
    # clipped to background: the INT8 graph finds nothing, and is refused with both reasons named
    monkeypatch.setattr("inspekt.engine.quantize.cpu_flags", lambda: ("avx2", "avx512f", "avx512_vnni"))
    rows = ["path,mask,split"]
    for i in range(8):
        save_image(tmp_path / "blank" / f"{i}.png", np.full((64, 64), 40, np.uint8))
        rows.append(f"{tmp_path / 'blank' / f'{i}.png'},,train")
    rows.extend(f"{root / 'images' / n},{root / 'masks' / n},val" for n in sorted(truth))
    (tmp_path / "skewed.csv").write_text("\n".join(rows) + "\n")
    with pytest.raises(AccuracyDropError, match=r"map50 drops .*boxes agree with fp32 on .* only") as refused:
        quantize_bundle(detect_trained.bundle, tmp_path / "r.inspekt", calib=tmp_path / "skewed.csv")
    assert refused.value.report.quality["map50"][1] < 0.5 and not (tmp_path / "r.inspekt").exists()
    for name in ("a", "b"):  # class folders, no boxes or masks: nothing to score a detector against
        for i in range(8):
            save_image(tmp_path / "unboxed" / name / f"{i}.png", np.full((64, 64), 40, np.uint8))
    unboxed = runner.invoke(app, ["export", str(detect_trained.bundle), "--int8", "--calib", str(tmp_path / "unboxed")])
    assert unboxed.exit_code == 2 and "no image annotated for this detect model" in unboxed.stderr
    assert "map50, box_f1 cannot be scored" in " ".join(unboxed.stderr.split()) and "Traceback" not in unboxed.stderr
    assert not any(cwd.iterdir())


def test_timm_centernet_exports_with_parity_and_takes_a_backbone_file(tmp_path):
    """centernet over a timm encoder: a plain timm backbone file loads into ``encoder.`` (--pretrained),
    and the bundle's ONNX graph gives the torch maps (the parity check at export)."""
    import torch
    from safetensors.torch import save_file

    from inspekt.card import InputSpec, ModelCard
    from inspekt.models import create_model
    from inspekt.models.pretrained import load_pretrained
    from inspekt.models.runtime import save_bundle

    network = create_model("centernet", num_classes=2, in_chans=1, backbone="resnet18", neck=16)
    import timm  # after inspekt.models, which applies the torchvision workaround (inspekt._compat)

    backbone = timm.create_model("resnet18", pretrained=False, in_chans=1, num_classes=0)
    save_file({k: v.contiguous() for k, v in backbone.state_dict().items()}, tmp_path / "resnet18.safetensors")
    report = load_pretrained(network, "centernet", str(tmp_path / "resnet18.safetensors"))
    assert report.loaded >= 100  # every convolution and batch-norm tensor of the encoder
    assert torch.equal(network.encoder.conv1.weight, backbone.conv1.weight)
    card = ModelCard(
        task="detect",
        architecture="centernet",
        params={"num_classes": 2, "in_chans": 1, "backbone": "resnet18", "neck": 16},
        classes=("pore", "crack"),
        input=InputSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.25,)),
        outputs=("heatmap", "boxes"),
    )
    _, parity = save_bundle(network, card, tmp_path / "bundle")
    assert parity.ok and parity.n_inputs == 4


def test_yolo_boxes_are_a_detection_dataset(tmp_path):
    """A YOLO folder (annotation import's reader fills Sample.boxes) is read into the boxes training
    and evaluation use, in pixels; an empty label file is a negative."""
    for name in ("a", "b"):
        save_image(tmp_path / "images" / f"{name}.png", np.zeros((50, 100), np.uint8))
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "a.txt").write_text("1 0.25 0.5 0.1 0.2\n0 0.75 0.5 0.2 0.4\n")
    (tmp_path / "labels" / "b.txt").write_text("")
    (tmp_path / "classes.txt").write_text("pore\ncrack\n")
    ds = open_dataset(tmp_path)
    assert "detect" in tasks_for(ds)
    rule = box_rule(ds)
    assert rule.classes == ("crack", "pore") and not rule.from_masks
    by_name = {s.path.name: s for s in ds.samples}
    found = rule.boxes(by_name["a.png"], (50, 100))
    expected = [[20, 20, 30, 30, 0], [65, 15, 85, 35, 1]]  # YOLO id 1 = crack at (25, 25) 10x10, id 0 = pore
    np.testing.assert_allclose(sorted(found.tolist(), key=lambda b: b[0]), expected, atol=1e-4)
    assert len(rule.boxes(by_name["b.png"], (50, 100))) == 0


def test_tiled_prediction_blends_windows_and_maps_boxes_to_the_original(tmp_path):
    """A stand-in network that finds bright squares exactly in each window it is given: the tiled
    path (windows of the half-size image, blended maps, peaks) returns the squares in original pixels,
    one box per square, also for the square that lies in four overlapping windows."""
    import cv2

    from inspekt.card import InputSpec, ModelCard, PostProcess
    from inspekt.tasks.detect.predict import predict_detect

    squares = [(40, 10, 70, 40), (240, 150, 270, 180), (100, 80, 124, 104)]  # x0 y0 x1 y1, original pixels
    image = np.full((200, 300), 40, np.uint8)
    for x0, y0, x1, y1 in squares:
        image[y0:y1, x0:x1] = 220
    spec = InputSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.25,), resize="tile", scale=0.5, overlap=0.25)
    card = ModelCard(
        task="detect",
        architecture="tiny_centernet",
        classes=("defect",),
        input=spec,
        outputs=("heatmap", "boxes"),
        postprocess=PostProcess(threshold=0.5, kernel=0),
    )

    def perfect(batch: np.ndarray) -> dict[str, np.ndarray]:
        maps = []
        for window in batch[:, 0]:
            n, _, stats, _ = cv2.connectedComponentsWithStats((window > 0).astype(np.uint8))
            boxes = np.array([(x, y, x + w, y + h, 0) for x, y, w, h, _ in stats[1:n]], np.float32).reshape(-1, 5)
            maps.append(encode_targets(boxes, (64, 64), 1))
        maps = np.stack(maps)
        return {"heatmap": maps[:, :1], "boxes": maps[:, 1:5]}

    (prediction,) = predict_detect(card, [image], ["planted"], perfect, batch_size=4)
    found = np.array([b["box"] for b in prediction.boxes])
    assert len(found) == 3 and prediction.extra["counts"] == {"defect": 3}
    assert iou_matrix(np.array(squares, float), found).max(axis=1).min() > 0.85


def test_overlay_and_plot_draw_the_boxes():
    import matplotlib

    matplotlib.use("Agg")
    from inspekt.draw import class_colour
    from inspekt.tasks.detect.predict import DetectPrediction

    boxes = [{"class": "crack", "score": 0.9, "box": [20, 30, 60, 50], "area_px": 800.0}]
    found = DetectPrediction("x.png", "detect", "crack", 0.9, {"pore": 0.1, "crack": 0.9}, boxes=boxes)
    drawn = found.overlay(np.zeros((80, 100), np.uint8))
    assert drawn.shape == (80, 100, 3)
    assert tuple(drawn[40, 20]) == class_colour(2) and tuple(drawn[49, 40]) == class_colour(2)  # crack: 2nd class
    assert not drawn[40, 40].any()  # inside the box: untouched
    assert found.plot(np.zeros((80, 100), np.uint8)).get_title() == "x.png: crack 0.900"


def test_config_mistakes_name_the_key(tmp_path):
    from inspekt.data.synth import write_dataset
    from inspekt.engine.trainer import train
    from inspekt.errors import ConfigError

    data = str(write_dataset(tmp_path / "d", n=8, size=64, layout="boxes", seed=1).root)
    options = {"task": "detect", "data": data, "out": str(tmp_path / "runs"), "epochs": 1}
    with pytest.raises(ConfigError, match=r"imgsz=40: detection networks need a multiple of 32 \(e.g. 32\)"):
        train(**options, imgsz=40)
    with pytest.raises(ConfigError, match="loss=ce: detection has one loss"):
        train(**options, loss="ce", imgsz=64)


def test_detection_trains_with_its_own_defaults_unless_given(tmp_path):
    """``inspekt train detect`` uses the task's defaults (the config's class defaults stopped a real run
    at epoch 12 with nothing found), the user's values win, and the run's config.yaml records both."""
    import yaml

    from inspekt.config import TrainConfig, build_config
    from inspekt.data.synth import write_dataset
    from inspekt.engine.trainer import train

    task = get_task("detect")
    plain = task.configure(build_config(TrainConfig, options={"task": "detect", "data": "d"}))
    assert (plain.epochs, plain.batch, plain.patience, plain.sampler) == (40, 16, 100, "balanced")
    assert plain.model == "tiny_centernet" and plain.model_params == {"width": 8}
    given = task.configure(
        build_config(
            TrainConfig,
            options={"task": "detect", "data": "d", "epochs": 3},
            overrides=["model_params.neck=16", "sampler=shuffle"],
        )
    )
    assert (given.epochs, given.sampler, given.batch) == (3, "shuffle", 16)
    assert given.model_params == {"width": 8, "neck": 16}

    def named(model: str) -> TrainConfig:
        return task.configure(build_config(TrainConfig, options={"task": "detect", "data": "d", "model": model}))

    assert named("centernet").model_params == {} and named("centernet").epochs == 40  # another model: its own
    assert named("tiny_centernet").model_params == {"width": 8}  # the default model named explicitly: the same
    classify = get_task("classify").configure(build_config(TrainConfig, options={"task": "classify", "data": "d"}))
    assert (classify.epochs, classify.lr, classify.augment, classify.patience) == (55, 0.001, "light", 20)  # its own
    assert (classify.batch, classify.sampler) == (32, "auto")  # the config's where it has none
    assert classify.model_params == {"stem_stride": 2, "pool": "avgmax"}  # and its own default parameters
    small = build_config(TrainConfig, options={"task": "classify", "data": "d", "imgsz": 64})
    assert get_task("classify").configure(small).model_params == {}  # small inputs: the plain network
    given = build_config(
        TrainConfig, options={"task": "classify", "data": "d"}, overrides=["augment=default", "model_params.pool=avg"]
    )
    given = get_task("classify").configure(given)
    assert given.augment == "default" and given.model_params == {"stem_stride": 2, "pool": "avg"}  # the user's win
    data = str(write_dataset(tmp_path / "d", n=24, size=64, layout="boxes", seed=1).root)
    run = train(task="detect", data=data, out=str(tmp_path / "runs"), epochs=1, imgsz=64, threads=1)
    written = yaml.safe_load((run.run_dir / "config.yaml").read_text())
    assert written["epochs"] == 1 and written["batch"] == 16 and written["model_params"] == {"width": 8}
    # the calibrated score threshold is written as "auto", so a run rebuilt from its config.yaml (--resume,
    # --config, the workbench's retrain) calibrates too instead of keeping the config class's 0.5
    assert plain.threshold == "auto" and written["threshold"] == "auto"
    rebuilt = task.configure(build_config(TrainConfig, options=written))
    assert task.training(rebuilt, open_dataset(data)).hooks.calibrate
    fixed = task.configure(build_config(TrainConfig, options={"task": "detect", "data": data, "threshold": 0.4}))
    assert not task.training(fixed, open_dataset(data)).hooks.calibrate
