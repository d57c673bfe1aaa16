"""Segmentation end to end on synthetic masks: mask rules, tiling, post-processing, training
(binary, multi-class, tiled, resume), export parity, prediction, evaluation and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from inspekt.bundle import open_bundle
from inspekt.card import InputSpec, ModelCard, PostProcess
from inspekt.cli import app
from inspekt.data import open_dataset
from inspekt.data.dataset import Sample
from inspekt.data.masks import mask_rule
from inspekt.engine.evaluator import evaluate, save_threshold
from inspekt.engine.predictor import Predictor
from inspekt.engine.trainer import resume, train
from inspekt.errors import ConfigError, DatasetError
from inspekt.io import save_image
from inspekt.models.runtime import save_bundle
from inspekt.regions import components
from inspekt.tasks.segment.losses import make_segment_loss
from inspekt.tasks.segment.metrics import SegmentationTally
from inspekt.tasks.segment.predict import postprocess, probabilities
from inspekt.tiling import window_starts

runner = CliRunner()


@pytest.fixture(scope="module")
def seg_data(tmp_path_factory) -> Path:
    """48 synthetic 64x64 surfaces in images/<class>/ + masks/<class>/ (ok images have empty masks)."""
    from inspekt.data.synth import write_dataset

    return write_dataset(tmp_path_factory.mktemp("seg") / "data", n=48, size=64, seed=3, layout="segmentation").root


def seg_config(data, out, **options):
    base = dict(
        task="segment",
        data=str(data),
        model="tiny_unet",
        model_params={"width": 4, "depth": 3},
        epochs=3,
        imgsz=32,
        batch=8,
        lr=0.01,
        augment="none",
        warmup_epochs=0,
        threads=1,
        out=str(out),
    )
    return base | options


@pytest.fixture(scope="module")
def seg_trained(seg_data, tmp_path_factory):
    return train(**seg_config(seg_data, tmp_path_factory.mktemp("runs"), epochs=4))


# --- masks -----------------------------------------------------------------------------------


def _mask_file(folder: Path, name: str, values: np.ndarray) -> Path:
    return save_image(folder / name, values.astype(np.uint8))


def test_binary_rule_thresholds_and_missing_masks_are_empty(tmp_path):
    mask = _mask_file(tmp_path, "m.png", np.array([[0, 127], [128, 255]]))
    rule = mask_rule(open_dataset_with(tmp_path, mask), "binary")
    assert rule.classes == ("background", "defect")
    assert rule.target(Sample(tmp_path / "a.png", mask=mask), (2, 2)).tolist() == [[0, 0], [1, 1]]
    assert not rule.target(Sample(tmp_path / "b.png"), (3, 4)).any()
    with pytest.raises(DatasetError, match="m.png: mask is 2x2 but its image a.png is 3x3"):
        rule.target(Sample(tmp_path / "a.png", mask=mask), (3, 3))


def test_masks_saved_as_0_1_or_in_colour_mark_their_defect_and_faint_ones_are_refused(tmp_path):
    """A 0/1 label mask and a red-on-black mask read as defect where painted (both read as no defect at all
    before, so defect images trained as good ones); a faint mask with several values under the threshold is
    refused by name, in training and in data info."""
    from inspekt.data.info import describe

    painted = np.zeros((4, 4), np.uint8)
    painted[1:3, 1:3] = 1
    red = np.zeros((4, 4, 3), np.uint8)
    red[1:3, 1:3, 0] = 255
    rule = mask_rule(open_dataset_with(tmp_path, _mask_file(tmp_path, "01.png", painted)), "binary")
    for name, pixels in (("01.png", painted), ("red.png", red)):
        mask = save_image(tmp_path / name, pixels)
        assert rule.target(Sample(tmp_path / "a.png", mask=mask), (4, 4)).tolist() == (painted > 0).tolist()
    faint = _mask_file(tmp_path, "faint.png", np.array([[0, 20], [40, 90]]))
    with pytest.raises(DatasetError, match=r"faint.png: no mask value reaches mask_threshold=128 \(values up to 90\)"):
        rule.target(Sample(tmp_path / "a.png", mask=faint), (2, 2))
    save_image(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    (tmp_path / "list.csv").write_text("path,mask\na.png,faint.png\n")
    (problem,) = describe(open_dataset(tmp_path / "list.csv")).mask_problems
    assert problem.path.endswith("faint.png") and "no mask value reaches mask_threshold=128" in problem.reason


def open_dataset_with(folder: Path, mask: Path, label: str | None = None):
    from inspekt.data.dataset import Dataset

    return Dataset(folder, "csv", (Sample(folder / "a.png", label, mask),), (label,) if label else ())


def test_values_rule_maps_pixel_values_and_names_unknown_ones(tmp_path):
    mask = _mask_file(tmp_path, "m.png", np.array([[0, 1], [2, 2]]))
    ds = open_dataset_with(tmp_path, mask)
    rule = mask_rule(ds, "values", values={1: "pore", 2: "scratch"})
    assert rule.classes == ("background", "pore", "scratch")
    assert rule.target(ds.samples[0], (2, 2)).tolist() == [[0, 1], [2, 2]]
    found = mask_rule(ds, "values")
    assert found.classes == ("background", "class_1", "class_2")
    partial = mask_rule(ds, "values", values={1: "pore"})
    with pytest.raises(DatasetError, match=r"m.png: mask value\(s\) \[2\] are not in mask_values"):
        partial.target(ds.samples[0], (2, 2))


def test_folder_rule_takes_the_class_from_the_folder(seg_data):
    ds = open_dataset(seg_data)
    rule = mask_rule(ds, "folder")
    assert rule.classes == ("background", "lop", "pore", "scratch")  # ok is the normal class: background
    pore = next(s for s in ds.samples if s.label == "pore")
    target = rule.target(pore, (64, 64))
    assert set(np.unique(target)) == {0, rule.classes.index("pore")}
    with pytest.raises(ConfigError, match="masks='nope'"):
        mask_rule(ds, "nope")


def test_a_dataset_without_masks_cannot_train_segmentation(tmp_path):
    from inspekt.data.synth import write_dataset

    data = write_dataset(tmp_path / "classes", n=8, size=32, seed=0).root
    with pytest.raises(DatasetError, match="no mask files found"):
        train(**seg_config(data, tmp_path))


# --- tiling and post-processing --------------------------------------------------------------


def test_windows_cover_the_image_and_end_at_its_border():
    starts = window_starts(600, 256, 0.25)
    assert starts[0] == 0 and starts[-1] == 600 - 256 and all(b - a <= 192 for a, b in zip(starts, starts[1:]))
    assert window_starts(100, 256, 0.25) == [0]


class BrightIsDefect(torch.nn.Module):
    """A fixed 'network': the defect logit grows with the pixel's brightness (1x1 convolution)."""

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.conv.weight[:] = torch.tensor([[[[0.0]]], [[[8.0]]]])
            self.conv.bias[:] = torch.tensor([0.0, 0.0])

    def forward(self, x):
        return self.conv(x)


def _bright_square(h: int, w: int, box: tuple[int, int, int, int]) -> np.ndarray:
    image = np.full((h, w), 40, np.uint8)
    y, x, bh, bw = box
    image[y : y + bh, x : x + bw] = 230
    return image


@pytest.mark.parametrize("resize", ["tile", "stretch"])
def test_a_large_image_comes_back_at_full_size_and_aligned(tmp_path, resize):
    """Through a real exported bundle and the ONNX Predictor: a 410x300 image, 64x64 model windows."""
    card = ModelCard(
        task="segment",
        architecture="bright_is_defect",
        classes=("background", "defect"),
        input=InputSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.25,), resize=resize),
        postprocess=PostProcess(threshold=0.5, min_area=0, kernel=0),
    )
    _, parity = save_bundle(BrightIsDefect(), card, tmp_path / "b")
    assert parity.ok
    predictor = Predictor.load(tmp_path / "b")
    box = (123, 201, 40, 57)
    image = _bright_square(300, 410, box)
    (prediction,) = predictor.predict(image)
    truth = image > 128
    assert prediction.mask.shape == (300, 410) and prediction.heatmap.shape == (300, 410)
    if resize == "tile":  # windows at the original scale: pixel-exact
        assert np.array_equal(prediction.mask > 0, truth)
    else:  # squeezed into 64x64 and back: aligned up to the resampling
        iou = (truth & (prediction.mask > 0)).sum() / (truth | (prediction.mask > 0)).sum()
        assert iou > 0.8
    (region,) = prediction.extra["components"]
    assert abs(region["bbox"][0] - 201) <= (0 if resize == "tile" else 4)
    assert region["class"] == "defect" and prediction.label == "defect" and prediction.extra["verdict"] == "defect"


def test_tiled_probabilities_blend_without_seams():
    spec = InputSpec(size=(32, 32), channels=1, mean=(0.5,), std=(0.25,), resize="tile", overlap=0.5)
    network = BrightIsDefect().eval()

    def run(batch):
        with torch.no_grad():
            return network(torch.from_numpy(batch)).numpy()

    flat = np.full((90, 77), 200, np.uint8)
    (probs,) = probabilities([flat], spec, run, batch_size=4)
    assert probs.shape == (2, 90, 77) and np.allclose(probs[1], probs[1, 0, 0], atol=1e-5)


def test_min_area_drops_small_regions_and_components_describe_the_rest():
    probs = np.zeros((2, 50, 80), np.float32)
    probs[1, 10:30, 20:50] = 0.9  # 600 px
    probs[1, 40:42, 70:72] = 0.8  # 4 px speck
    probs[0] = 1 - probs[1]
    kept, defect = postprocess(probs, PostProcess(threshold=0.5, min_area=10, kernel=0))
    everything, _ = postprocess(probs, PostProcess(threshold=0.5, min_area=0, kernel=0))
    assert everything[40:42, 70:72].all() and not kept[40:42, 70:72].any()
    (region,) = components(kept, defect, ("background", "defect"))
    assert region["bbox"] == [20, 10, 30, 20] and region["area_px"] == 600
    assert region["area_pct"] == pytest.approx(100 * 600 / 4000) and region["max_score"] == pytest.approx(0.9)
    opened, _ = postprocess(probs, PostProcess(threshold=0.5, min_area=0, kernel=5))
    assert not opened[40:42, 70:72].any() and opened[12:28, 22:48].all()  # opening removes the speck too
    higher, _ = postprocess(probs, PostProcess(threshold=0.95, min_area=0, kernel=0))
    assert not higher.any()


def test_an_ok_verdict_beside_a_probability_above_the_threshold_says_the_clean_up_removed_it():
    """The workbench showed "ok · largest defect probability 80.3%" at threshold 0.80, with nothing saying why."""
    from inspekt.tasks.segment.predict import _prediction

    probs = np.zeros((2, 50, 80), np.float32)
    probs[1, 40:42, 70:72] = 0.9  # a 4 px speck
    probs[0] = 1 - probs[1]
    card = ModelCard(
        task="segment",
        architecture="bright_is_defect",
        classes=("background", "defect"),
        input=InputSpec(size=(64, 64), channels=1, mean=(0.5,), std=(0.25,)),
    )
    speck = _prediction(card, PostProcess(threshold=0.5, min_area=10, kernel=0), "a.png", probs)
    assert speck.label == "ok" and speck.score == pytest.approx(0.9) and speck.extra["cleaned_px"] == 4
    assert "the clean-up (minimum region area, kernel) removed the 4 px above the threshold" in speck.describe()
    kept = _prediction(card, PostProcess(threshold=0.5, min_area=2, kernel=0), "a.png", probs)
    assert kept.label == "defect" and kept.extra["cleaned_px"] == 0 and "clean-up" not in kept.describe()


# --- metrics and losses ----------------------------------------------------------------------


def test_tally_counts_iou_dice_and_image_verdicts():
    tally = SegmentationTally(2)
    target = np.zeros((4, 4), np.uint8)
    target[0, :4] = 1
    predicted = np.zeros((4, 4), np.uint8)
    predicted[0, :2] = 1
    predicted[3, :2] = 1
    assert tally.add(target, predicted, 0.9, True) == pytest.approx(2 / 6)
    assert tally.add(np.zeros((4, 4), np.uint8), np.zeros((4, 4), np.uint8), 0.1, False) == 1.0
    m = tally.metrics(("background", "defect"))
    assert m["iou"] == pytest.approx(2 / 6) and m["dice"] == pytest.approx(4 / 8)
    assert m["pixel_precision"] == pytest.approx(0.5) and m["pixel_recall"] == pytest.approx(0.5)
    assert m["per_image_iou"] == pytest.approx((2 / 6 + 1) / 2) and m["image_auroc"] == 1.0
    assert m["image_f1"] == 1.0 and m["n_defective"] == 1


def test_tally_finds_the_threshold_with_the_best_defect_iou():
    tally = SegmentationTally(2)
    assert tally.best_threshold() is None
    target = np.array([[1, 1, 1, 0, 0, 0]], np.uint8)
    defect = np.array([[0.9, 0.8, 0.3, 0.6, 0.2, 0.1]], np.float32)
    tally.add(target, target, 0.9, True, defect)
    # IoU at >= 0.81: 1/3; >= 0.61: 2/3; >= 0.31: 2/4 (one false alarm); >= 0.21: 3/4; >= 0.11: 3/5
    assert tally.best_threshold() == (0.21, pytest.approx(3 / 4))
    assert tally.best_threshold(low=0.31) == (0.61, pytest.approx(2 / 3))


def test_segmentation_losses_prefer_the_right_mask_and_tversky_punishes_misses():
    targets = torch.zeros(1, 8, 8, dtype=torch.long)
    targets[0, 2:6, 2:6] = 1
    right = torch.stack([1 - targets.float(), targets.float()], 1) * 6 - 3
    for name in ("dice_bce", "focal", "tversky"):
        loss = make_segment_loss(name)
        assert loss(right, targets) < loss(-right, targets)
    missed = torch.stack([torch.full((1, 8, 8), 3.0), torch.full((1, 8, 8), -3.0)], 1)  # predicts nothing
    flooded = -missed  # predicts defect everywhere
    recall_first = make_segment_loss("tversky", beta=0.9)
    precision_first = make_segment_loss("tversky", beta=0.1)
    assert recall_first(missed, targets) - recall_first(flooded, targets) > precision_first(
        missed, targets
    ) - precision_first(flooded, targets)
    with pytest.raises(ConfigError, match="not a segmentation loss"):
        make_segment_loss("ce")


# --- training, export, prediction, evaluation ------------------------------------------------


def test_binary_training_writes_a_checked_bundle_that_predicts_full_size_masks(seg_trained, seg_data):
    result = seg_trained
    assert result.parity.ok and {"val_iou", "val_dice", "val_image_auroc", "best_epoch"} <= set(result.metrics)
    card = open_bundle(result.bundle).card
    assert card.task == "segment" and card.classes == ("background", "defect") and card.masks.mode == "binary"
    # the task's default threshold=auto: the card keeps the validation's best threshold
    assert card.postprocess.threshold == result.metrics["val_best_threshold"] and card.postprocess.min_area >= 1
    assert result.metrics["val_best_threshold_iou"] > 0 and card.sanity is not None and card.sanity.ok  # checked
    assert (result.run_dir / "curves.png").is_file() and len(result.history) == 4
    image = next((seg_data / "images" / "pore").iterdir())
    onnx, torch_ = (Predictor.load(result.bundle, backend=b).predict([image])[0] for b in ("onnx", "torch"))
    assert onnx.mask.shape == (64, 64) and np.abs(onnx.heatmap - torch_.heatmap).max() < 1e-4
    assert json.loads(json.dumps(onnx.to_dict()))["verdict"] in ("defect", "ok")


def test_evaluation_scores_masks_and_counts_empty_ones_as_negatives(seg_trained, seg_data, tmp_path):
    scored = evaluate(seg_trained.bundle, seg_data)
    m = scored.metrics
    assert m["n_images"] == 48 and m["n_defective"] == 36  # 12 ok images: empty masks, valid negatives
    assert 0 <= m["iou"] <= 1 and len(m["per_class"]) == 1 and m["image_auroc"] is not None
    assert {"path", "iou", "tp", "fp", "fn", "verdict", "defective"} <= set(scored.rows[0])
    ok_rows = [r for r in scored.rows if r["label"] == "ok"]
    assert ok_rows and all(not r["defective"] and r["tp"] == 0 and r["fn"] == 0 for r in ok_rows)
    worst = scored.worst(5)
    assert [scored.rows[i]["iou"] for i in worst] == sorted(scored.rows[i]["iou"] for i in worst)


@pytest.mark.slow
def test_multiclass_from_folders(seg_data, tmp_path):
    result = train(**seg_config(seg_data, tmp_path, masks="folder", epochs=2))
    card = open_bundle(result.bundle).card
    assert card.classes == ("background", "lop", "pore", "scratch") and card.params["num_classes"] == 4
    prediction = Predictor.load(result.bundle).predict([next((seg_data / "images" / "lop").iterdir())])[0]
    assert prediction.label in card.classes[1:] + ("ok",) and int(prediction.mask.max()) < 4
    assert len(evaluate(result.bundle, seg_data).metrics["per_class"]) == 3


@pytest.mark.slow
def test_tiled_training_on_crops_and_exact_resume(seg_data, tmp_path):
    options = seg_config(seg_data, tmp_path, resize="tile", defect_crops=0.7, epochs=3, threshold="auto")
    reference = train(**options, name="reference")
    card = open_bundle(reference.bundle).card
    assert card.input.resize == "tile"
    assert card.postprocess.threshold == reference.metrics["val_best_threshold"]  # calibrated on validation

    def interrupt_after_two(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    stopped = train(**options, name="stopped", on_epoch=interrupt_after_two)
    assert stopped.interrupted
    finished = resume(stopped.run_dir)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(finished.history) == strip(reference.history)


def test_config_mistakes_name_the_key(seg_data, tmp_path):
    with pytest.raises(ConfigError, match="multiple of 32"):
        train(**seg_config(seg_data, tmp_path, imgsz=40))
    with pytest.raises(ConfigError, match="classification loss"):
        train(**seg_config(seg_data, tmp_path, loss="ce"))
    with pytest.raises(ConfigError, match="resize=tile"):
        train(task="classify", data=str(seg_data), resize="tile", out=str(tmp_path))


@pytest.mark.slow
def test_a_mask_of_the_wrong_size_is_skipped_and_reported(seg_data, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(seg_data, data)
    bad = next((data / "masks" / "pore").iterdir())
    save_image(bad, np.zeros((10, 10), np.uint8))
    result = train(**seg_config(data, tmp_path, epochs=1))
    assert any(s.path.endswith(bad.stem + ".png") and "mask is 10x10" in s.reason for s in result.skipped.skipped)


# --- CLI -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_cli_train_predict_eval_and_threshold(seg_data, tmp_path):
    args = [
        "train",
        "segment",
        "--data",
        str(seg_data),
        "--epochs",
        "1",
        "--imgsz",
        "32",
        "--out",
        str(tmp_path),
        "--json",
        "model_params.width=4",
        "model_params.depth=3",
        "threads=1",
    ]
    out = runner.invoke(app, args)
    assert out.exit_code == 0, out.output
    bundle = json.loads(out.stdout)["bundle"]
    pore = next((seg_data / "images" / "pore").iterdir())
    out = runner.invoke(
        app,
        [
            "predict",
            bundle,
            str(pore),
            "--json",
            "--min-area",
            "0",
            "--threshold",
            "0.2",
            "--save-dir",
            str(tmp_path / "pred"),
        ],
    )
    assert out.exit_code == 0, out.output
    row = json.loads(out.stdout.splitlines()[0])
    assert row["mask_shape"] == [64, 64] and isinstance(row["components"], list)
    assert Path(row["saved"]).is_file() and Path(row["saved_mask"]).is_file()
    out = runner.invoke(app, ["predict", bundle, str(pore), "--csv"])
    assert out.exit_code == 0, out.output
    header, row = out.stdout.splitlines()[:2]
    assert header.startswith("path,label,score,verdict,components") and row.startswith(str(pore))
    out = runner.invoke(
        app,
        [
            "eval",
            bundle,
            "--data",
            str(seg_data),
            "--json",
            "-",
            "--set-threshold",
            "0.3",
            "--plots",
            str(tmp_path / "worst"),
            "--csv",
            str(tmp_path / "rows.csv"),
        ],
    )
    assert out.exit_code == 0, out.output
    stored = json.loads(out.stdout)
    assert stored["metrics"]["n_images"] == 48 and stored["postprocess"]["threshold"] == 0.3
    assert len((tmp_path / "rows.csv").read_text().splitlines()) == 49
    # the metrics printed with --set-threshold are those at the new threshold (they were the old one's)
    again = json.loads(runner.invoke(app, ["eval", bundle, "--data", str(seg_data), "--json", "-"]).stdout)
    assert again["metrics"] == stored["metrics"]
    overlays = sorted((tmp_path / "worst").glob("*.png"))
    assert overlays and overlays[0].name.startswith("001_iou")
    assert open_bundle(bundle).card.postprocess.threshold == 0.3
    out = runner.invoke(app, ["eval", bundle, "--data", str(seg_data), "--set-threshold", "best-f1"])
    assert out.exit_code == 2 and "defect probability" in out.output
    save_threshold(bundle, 0.6)
    assert open_bundle(bundle).card.postprocess.threshold == 0.6


def test_a_plain_backbone_file_starts_an_smp_encoder(tmp_path):
    from safetensors.torch import save_file

    from inspekt.models import create_model
    from inspekt.models.pretrained import load_pretrained

    donor = create_model("unet", num_classes=2, in_chans=3, encoder="resnet18")
    backbone = {
        k.removeprefix("encoder."): v.clone() for k, v in donor.state_dict().items() if k.startswith("encoder.")
    }
    save_file(backbone, str(tmp_path / "resnet18.safetensors"))
    network = create_model("fpn", num_classes=3, in_chans=1, encoder="resnet18")
    report = load_pretrained(network, "fpn", str(tmp_path / "resnet18.safetensors"))
    assert report.loaded == len(backbone) and "encoder.conv1.weight" in report.adapted  # RGB stem summed for grey
    assert torch.equal(network.state_dict()["encoder.layer1.0.conv1.weight"], backbone["layer1.0.conv1.weight"])
    assert any(name.startswith("decoder") for name in report.skipped)


def test_segmentation_trains_with_its_own_defaults_and_tiles_only_much_larger_images(tmp_path):
    """``inspekt train segment`` balances images with and without defects, weights defect pixels,
    calibrates its threshold and strides its stem at 128 px unless told otherwise (the config's class
    defaults kept a validation IoU of 0 on magnetic_tile); resize=auto squeezes images up to 3x imgsz
    per side whole into the network and tiles larger ones (detection tiles from 2x)."""
    from inspekt.config import TrainConfig, build_config
    from inspekt.data.synth import write_dataset
    from inspekt.tasks import get_task
    from inspekt.tasks.detect.train import DetectTraining
    from inspekt.tasks.segment.train import SegmentTraining

    task = get_task("segment")
    plain = task.configure(build_config(TrainConfig, options={"task": "segment", "data": "d"}))
    assert (plain.sampler, plain.class_weights, plain.threshold, plain.patience) == ("balanced", "auto", "auto", 100)
    assert plain.model == "tiny_unet" and plain.model_params == {"stem_stride": 2, "width": 8}
    given = task.configure(
        build_config(TrainConfig, options={"task": "segment", "data": "d", "imgsz": 64}, overrides=["threshold=0.4"])
    )
    assert given.threshold == 0.4 and given.model_params == {}  # the user's value; small inputs keep every pixel

    ds = open_dataset(write_dataset(tmp_path / "s", n=8, size=32, seed=1, layout="segmentation").root)
    judge = SegmentTraining(task.configure(build_config(TrainConfig, options={"task": "segment", "data": "d"})), ds)
    found = {"n_defective": 4, "best_threshold_iou": 0.005, "best_threshold": 0.05}
    everywhere = judge.sanity(found | {"pixel_recall": 1.0, "pixel_precision": 0.0049})
    assert not everywhere.ok and "marks nearly every pixel as defect" in everywhere.why  # passed before
    assert judge.sanity(found | {"pixel_recall": 0.7, "pixel_precision": 0.3}).ok
    assert not judge.sanity(found | {"best_threshold_iou": 0.0}).ok  # finds nothing
    for side, segment, detect in ((80, "stretch", "tile"), (104, "tile", "tile"), (60, "stretch", "stretch")):
        ds = open_dataset(write_dataset(tmp_path / str(side), n=8, size=side, seed=1, layout="segmentation").root)
        cfg = build_config(TrainConfig, options={"task": "segment", "data": str(ds.root), "imgsz": 32})
        assert SegmentTraining(cfg, ds).resize(ds) == segment, side
        assert DetectTraining(cfg.model_copy(update={"task": "detect"}), ds).resize(ds) == detect, side


# --- INT8 ------------------------------------------------------------------------------------


def test_int8_segmenter_is_judged_by_defect_iou_image_f1_and_verdicts(seg_trained, seg_data, tmp_path, monkeypatch):
    """export --int8 for a segmenter: calibrated through the Predictor, judged on the images it did not train on
    by the evaluation's defect IoU and image F1 and by how many image verdicts agree (the speed is fixed: it
    depends on this CPU); the INT8 bundle predicts masks like the fp32 one."""
    monkeypatch.setattr("inspekt.engine.quantize.measure_speedup", lambda fp32, int8, images: {1: 1.2, 16: 1.1})
    out = tmp_path / "q.inspekt"
    args = ["export", str(seg_trained.bundle), "--int8", "--calib", str(seg_data), "--out", str(out)]
    said = CliRunner().invoke(app, [*args, "--max-drop", "0.05", "--min-agreement", "0.8", "--json"])
    assert said.exit_code == 0, said.output
    report = json.loads(said.stdout)
    assert set(report["quality"]) == {"defect_iou", "image_f1"} and report["agreeing"] == "image verdicts"
    assert report["n_images"] == 8 and report["n_calib"] == 40 and report["agreement"] >= 0.8
    fp32_iou, int8_iou = report["quality"]["defect_iou"]
    assert fp32_iou > 0.2 and abs(int8_iou - fp32_iou) <= 0.05
    assert open_bundle(out).card.precision == "int8"
    images = sorted((seg_data / "images").rglob("*.png"))[:8]
    fp32, int8 = (Predictor.load(b).predict(images) for b in (seg_trained.bundle, out))
    for a, b in zip(fp32, int8):
        assert a.mask.shape == b.mask.shape and np.mean(a.mask == b.mask) > 0.95


def test_int8_agreement_counts_image_verdicts():
    from types import SimpleNamespace

    from inspekt.tasks import get_task

    def result(verdicts):
        return SimpleNamespace(rows=[{"path": f"{i}.png", "verdict": v} for i, v in enumerate(verdicts)])

    segment = get_task("segment")
    assert segment.int8_agreement(result([True, False, True, True]), result([True, True, True, False])) == 0.5
    assert segment.int8_agreement(result([]), result([])) == 1.0
    samples = [Sample(path=Path("a.png"), mask=Path("a_mask.png")), Sample(path=Path("b.png"))]
    assert segment.int8_truth(None, samples) == samples  # b: no mask in a dataset with masks, so defect-free
    assert segment.int8_truth(None, samples[1:]) == []
