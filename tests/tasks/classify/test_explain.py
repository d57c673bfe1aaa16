"""Grad-CAM explanations: heat maps that align with the image, layer choice, errors, the CLI."""

import json

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from inspekt.bundle import CARD, copy_bundle, open_bundle
from inspekt.card import InputSpec, ModelCard
from inspekt.cli import app
from inspekt.errors import ConfigError
from inspekt.io import load_image, save_image
from inspekt.models import create_model
from inspekt.models.runtime import save_bundle
from inspekt.results import BatchReport
from inspekt.tasks.classify.explain import METHODS, SIDE_GAP, Explainer, default_layer

SIDE, SQUARE = 40, 10  # training images and the defect square drawn on them


def _noise(rng, h, w):
    return np.clip(rng.normal(128, 12, (h, w)), 0, 255).astype(np.uint8)


def _with_square(image, y, x, bright):
    image[y : y + SQUARE, x : x + SQUARE] = 230 if bright else 25
    return image


@pytest.fixture(scope="module")
def squares(tmp_path_factory):
    """A tiny_cnn trained to tell grey noise ("ok") from noise with a bright or dark square ("defect")."""
    from inspekt.config import TrainConfig
    from inspekt.engine.trainer import train

    rng, root = np.random.default_rng(0), tmp_path_factory.mktemp("squares")
    for i in range(30):
        save_image(root / "data" / "ok" / f"{i}.png", _noise(rng, SIDE, SIDE))
        y, x = rng.integers(0, SIDE - SQUARE + 1, 2)
        save_image(root / "data" / "defect" / f"{i}.png", _with_square(_noise(rng, SIDE, SIDE), y, x, i % 2 == 0))
    cfg = TrainConfig(
        task="classify",
        data=str(root / "data"),
        epochs=20,
        imgsz=32,
        batch=16,
        augment="light",
        model_params={"width": 8},
        out=str(root / "runs"),
    )
    return train(cfg).bundle


def _with_resize(bundle_path, resize, out):
    """The same model with another resize policy in its card (the weights do not care)."""
    bundle = open_bundle(bundle_path)
    card = bundle.card.model_copy(update={"input": bundle.card.input.model_copy(update={"resize": resize})})
    return copy_bundle(bundle, out, archive=False, card=card)


# Squares in the four corners of what the model sees. letterbox: 30x40 -> 24x32 with 4 grey rows
# above and below; crop: 48x40 -> 38x32, 3 rows cut at each end (the squares stay inside).
@pytest.mark.parametrize(
    "resize, shape, margin", [("stretch", (SIDE, SIDE), 0), ("letterbox", (30, SIDE), 0), ("crop", (48, SIDE), 5)]
)
def test_heat_map_peaks_on_the_defect_at_the_original_size(squares, tmp_path, resize, shape, margin):
    # At a 32-pixel input the last stage is 2x2, so the map tells quarters apart: the peak, at the
    # original resolution, must fall in the square's quarter of the image for most images.
    explainer = Explainer.load(_with_resize(squares, resize, tmp_path / resize))
    assert explainer.card.input.channels == 1  # grey training images: a grayscale model
    rng, (h, w), hits = np.random.default_rng(7), shape, 0
    for y in (margin, h - SQUARE - margin):
        for x in (0, w - SQUARE):
            for bright in (True, False, True, False):
                result = explainer.explain(_with_square(_noise(rng, h, w), y, x, bright), target="defect")
                assert result.cam.shape == (h, w) and result.overlay.shape == (h, w, 3)
                assert result.cam.dtype == np.float32 and 0 <= result.cam.min() and result.cam.max() <= 1
                peak_y, peak_x = np.unravel_index(np.argmax(result.cam), result.cam.shape)
                hits += (peak_y < h / 2) == (y < h / 2) and (peak_x < w / 2) == (x < w / 2)
    assert hits >= 12, f"the heat map peaked in the square's quarter in only {hits} of 16 images"


class _Brightness(nn.Module):
    """A "classifier" whose Grad-CAM is exactly the brightness of its input: its layer ``features``
    is the identity, and class 0 scores the mean of it, so the map is known in advance."""

    def __init__(self):
        super().__init__()
        self.features = nn.Conv2d(1, 1, 1, bias=False)
        nn.init.ones_(self.features.weight)

    def forward(self, x):
        score = self.features(x).mean(dim=(1, 2, 3))
        return torch.stack([score, -score], dim=1)


def _card_only_bundle(folder, **card):
    """A bundle folder holding just a card: enough for an Explainer given its network directly."""
    defaults = dict(
        task="classify",
        architecture="tiny_cnn",
        classes=("bright", "dark"),
        input=InputSpec(size=(32, 32), channels=1, mean=(0.5,), std=(0.25,)),
    )
    folder.mkdir(parents=True)
    (folder / CARD).write_text(ModelCard(**(defaults | card)).to_json())
    return open_bundle(folder)


@pytest.mark.parametrize("resize", ["stretch", "letterbox", "crop"])
def test_map_back_aligns_a_known_heat_map_exactly(tmp_path, resize):
    spec = InputSpec(size=(32, 32), channels=1, mean=(0.5,), std=(0.25,), resize=resize)
    explainer = Explainer(_card_only_bundle(tmp_path / "b", input=spec), _Brightness(), layer="features")
    image = np.full((60, 90), 128, np.uint8)
    image[20:35, 45:60] = 255
    result = explainer.explain(image, target="bright")
    inside = result.cam[22:33, 47:58]
    outside = np.ones_like(result.cam, bool)
    outside[17:38, 42:63] = False  # the square and a margin for the interpolated edge
    assert inside.min() > 0.8 and result.cam[outside].max() < 0.1
    if resize == "crop":  # 60x90 -> 32x48, 8 columns cut at each side: the model never saw those
        assert result.cam[:, :12].max() == 0 and result.cam[:, -12:].max() == 0
        assert np.array_equal(result.overlay[:, :12], np.repeat(image[:, :12, None], 3, axis=2))


@pytest.fixture(scope="module")
def rgb_bundle(tmp_path_factory):
    """An untrained 3-class RGB tiny_cnn in a real bundle (weights + ONNX), for API and CLI checks."""
    torch.manual_seed(0)
    network = create_model("tiny_cnn", num_classes=3, width=4)
    card = ModelCard(
        task="classify",
        architecture="tiny_cnn",
        params={"num_classes": 3, "width": 4},
        classes=("ok", "pore", "scratch"),
        input=InputSpec(size=(32, 32)),
    )
    return save_bundle(network, card, tmp_path_factory.mktemp("rgb") / "model")[0]


def test_default_target_is_the_prediction_and_any_class_can_be_explained(rgb_bundle):
    explainer = Explainer.load(rgb_bundle, method="gradcam++")
    image = np.random.default_rng(1).integers(0, 256, (30, 50, 3), dtype=np.uint8)
    default = explainer.explain(image)
    assert default.target == default.prediction.label and default.method == "gradcam++"
    assert default.layer == "features.3" and default.cam.shape == (30, 50)
    chosen = explainer.explain(image, target="scratch", source="x.png")
    assert chosen.target == "scratch" and chosen.source == "x.png"
    assert chosen.to_dict()["predicted"] == default.prediction.label


def test_opacity_blends_the_heat_map_over_the_original(rgb_bundle):
    explainer = Explainer.load(rgb_bundle)
    image = np.random.default_rng(2).integers(0, 256, (24, 24, 3), dtype=np.uint8)
    assert np.array_equal(explainer.explain(image, opacity=0).overlay, image)
    assert not np.array_equal(explainer.explain(image, opacity=1).overlay, image)
    grey = explainer.explain(image[:, :, 0])  # a grayscale image still gives an RGB overlay
    assert grey.overlay.shape == (24, 24, 3)


def test_every_method_runs_and_gradients_work_inside_inference_mode(rgb_bundle):
    image = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for method in METHODS:
        result = Explainer.load(rgb_bundle, method=method).explain(image)
        assert result.cam.shape == (32, 32) and np.isfinite(result.cam).all(), method
    explainer = Explainer.load(rgb_bundle)
    expected = explainer.explain(image, target="ok").cam
    with torch.inference_mode():  # e.g. a server that predicts inside inference_mode
        assert np.array_equal(explainer.explain(image, target="ok").cam, expected)


def test_layer_override_by_dotted_name(rgb_bundle):
    explainer = Explainer.load(rgb_bundle, layer="features.1.3")
    assert explainer.layer == "features.1.3"
    assert explainer.explain(np.zeros((16, 16, 3), np.uint8)).cam.shape == (16, 16)


@pytest.mark.parametrize(
    "name", ["resnet18", "efficientnet_b0", "mobilenetv3_small_100", "convnext_atto", "regnety_002"]
)
def test_default_layer_of_timm_models_is_their_last_conv_stage(name, tmp_path):
    import timm

    network = timm.create_model(name, pretrained=False, num_classes=3).eval()
    layer = default_layer(network)
    stage = network.get_submodule(layer)
    assert any(isinstance(m, nn.Conv2d) for m in stage.modules())
    bundle = _card_only_bundle(
        tmp_path / "b", architecture=name, classes=("a", "b", "c"), input=InputSpec(size=(64, 64))
    )
    result = Explainer(bundle, network).explain(np.full((48, 80, 3), 90, np.uint8))
    assert result.layer == layer and result.cam.shape == (48, 80)


def test_default_layer_of_tiny_cnn_and_of_a_plain_conv_net():
    assert default_layer(create_model("tiny_cnn", num_classes=2)) == "features.3"
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten())
    assert default_layer(plain) == "2"
    with pytest.raises(ConfigError, match="no convolution layer"):
        default_layer(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)))


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "gradcam+"}, 'unknown explanation method.*Did you mean "gradcam\\+\\+".*layercam'),
        ({"layer": "features.9"}, "layer 'features.9' is not in TinyCNN.*features.3.3"),
        ({"layer": "head"}, "not an NxCxHxW feature map"),
    ],
)
def test_bad_method_or_layer_raise_with_the_choices(rgb_bundle, options, message):
    with pytest.raises(ConfigError, match=message):
        Explainer.load(rgb_bundle, **options)


def test_bad_class_or_opacity_raise_before_any_work(rgb_bundle, tmp_path):
    explainer, image = Explainer.load(rgb_bundle), np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(ConfigError, match="class 'scratches'.*Did you mean \"scratch\".*ok, pore, scratch"):
        explainer.explain(image, target="scratches")
    with pytest.raises(ConfigError, match="opacity 1.5 must lie in"):
        explainer.explain(image, opacity=1.5)
    with pytest.raises(ConfigError, match="opacity -0.1"):
        explainer.explain_files([tmp_path / "missing.png"], opacity=-0.1)


def test_only_classification_bundles(tmp_path):
    bundle = _card_only_bundle(tmp_path / "seg", task="segment", classes=("background", "defect"))
    with pytest.raises(ConfigError, match="Grad-CAM explains classification models; this is a segment bundle"):
        Explainer(bundle, _Brightness(), layer="features")


def test_explain_files_skips_a_corrupt_file(rgb_bundle, tmp_path):
    good = save_image(tmp_path / "good.png", np.full((20, 30, 3), 100, np.uint8))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    report = BatchReport()
    results = Explainer.load(rgb_bundle).explain_files([bad, good], report=report)
    assert [r.source for r in results] == [str(good)] and results[0].cam.shape == (20, 30)
    assert [s.path for s in report.skipped] == [str(bad)] and report.loaded == 1


runner = CliRunner()


def test_cli_writes_overlays_at_the_original_size(rgb_bundle, tmp_path):
    sizes = {"wide.png": (20, 50), "tall.jpg": (40, 16)}
    for name, (h, w) in sizes.items():
        save_image(tmp_path / "images" / "a" / name, np.full((h, w, 3), 120, np.uint8))
    save_image(tmp_path / "images" / "b" / "wide.png", np.full((10, 10), 50, np.uint8))  # same stem, grey
    (tmp_path / "images" / "broken.png").write_text("not an image")
    out = tmp_path / "out"
    result = runner.invoke(
        app,
        [
            "explain",
            str(rgb_bundle),
            str(tmp_path / "images"),
            "--out",
            str(out),
            "--method",
            "layercam",
            "--class",
            "pore",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert len(rows) == 3 and {r["target"] for r in rows} == {"pore"}
    assert sorted(p.name for p in out.iterdir()) == ["tall_layercam.png", "wide_layercam.png", "wide_layercam_2.png"]
    for row in rows:
        written, original = load_image(row["output"]), load_image(row["path"], mode="RGB")
        h, w = original.shape[:2]
        assert written.shape == (h, 2 * w + SIDE_GAP, 3)  # the image, a gap, its overlay: at the original size
        assert np.array_equal(written[:, :w], original) and (written[:, w : w + SIDE_GAP] == 255).all()
    assert "broken.png: not an image" in result.stderr and "skipped 1" in result.stderr


def test_cli_fails_with_one_line_when_nothing_could_be_explained(rgb_bundle, tmp_path):
    (tmp_path / "bad.png").write_text("text")
    result = runner.invoke(app, ["explain", str(rgb_bundle), str(tmp_path / "bad.png"), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "none of the 1 file(s) could be read" in result.stderr
    result = runner.invoke(app, ["explain", str(rgb_bundle), str(tmp_path / "bad.png"), "--method", "nope"])
    assert result.exit_code == 2 and "unknown explanation method 'nope'" in result.stderr


@pytest.mark.slow
def test_cli_in_a_subprocess_prints_a_table(rgb_bundle, tmp_path):
    import os
    import subprocess
    import sys

    image = save_image(tmp_path / "part.png", np.full((12, 18, 3), 80, np.uint8))
    exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
    proc = subprocess.run(
        [exe, "explain", str(rgb_bundle), str(image), "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "part_gradcam.png" in proc.stdout and f"wrote 1 overlay(s) to {tmp_path / 'out'}" in proc.stdout
    assert "loaded 1 image, skipped 0" in proc.stderr
    assert load_image(tmp_path / "out" / "part_gradcam.png").shape == (12, 2 * 18 + SIDE_GAP, 3)
    alone = subprocess.run(
        [exe, "explain", str(rgb_bundle), str(image), "--out", str(tmp_path / "alone"), "--overlay-only"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert alone.returncode == 0 and load_image(tmp_path / "alone" / "part_gradcam.png").shape == (12, 18, 3)
