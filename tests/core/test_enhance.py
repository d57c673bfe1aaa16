"""Enhancement steps, presets, pipelines (parse, validate, JSON) and their place before the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from inspekt.enhance import PRESETS, STEPS, Pipeline
from inspekt.errors import ConfigError


def _grey(seed: int = 0, size: int = 64) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ramp = np.tile(np.linspace(90, 150, size), (size, 1))
    return np.clip(ramp + rng.normal(0, 4, (size, size)), 0, 255).astype(np.uint8)


def _rgb(seed: int = 0) -> np.ndarray:
    g = _grey(seed)
    return np.dstack([g, np.flipud(g), np.fliplr(g)])


@pytest.mark.parametrize("name", sorted(STEPS))
@pytest.mark.parametrize("colour", [False, True])
def test_every_step_keeps_type_and_channels(name, colour):
    image = _rgb() if colour else _grey()
    out = Pipeline.of([(name, {})])(image)
    assert out.dtype == np.uint8 and out.ndim == image.ndim
    if name != "resize":
        assert out.shape == image.shape


def test_neutral_parameters_leave_the_image_alone():
    image = _rgb(1)
    for name, params in [
        ("brightness_contrast", {}),
        ("gamma", {"gamma": 1.0}),
        ("unsharp", {"amount": 0.0}),
        ("resize", {"scale": 1.0}),
    ]:
        np.testing.assert_array_equal(Pipeline.of([(name, params)])(image), image)


def test_steps_do_what_they_say():
    image = _grey(2)
    assert Pipeline.of([("brightness_contrast", {"brightness": 20})])(image).mean() == pytest.approx(
        image.mean() + 20, abs=0.5
    )
    assert Pipeline.of([("gamma", {"gamma": 2.0})])(image).mean() > image.mean() + 10

    def local(a):  # local contrast: spread of neighbour differences
        return np.diff(a.astype(int), axis=1).std()

    assert local(Pipeline.of([("clahe", {"clip_limit": 4.0})])(image)) > local(image) * 1.5
    assert Pipeline.of([("equalize", {})])(image).std() > image.std() * 2
    salted = image.copy()
    salted[::7, ::5] = 255
    cleaned = Pipeline.of([("median", {"ksize": 3})])(salted)
    assert (cleaned[::7, ::5] == 255).mean() < 0.02  # the salt is gone
    assert Pipeline.of([("unsharp", {"amount": 2.0})])(image).std() > image.std()
    assert set(np.unique(Pipeline.of([("adaptive_threshold", {})])(image))) <= {0, 255}
    assert Pipeline.of([("resize", {"scale": 0.5})])(image).shape == (32, 32)


def test_a_wrong_pipeline_file_is_named(tmp_path):
    (tmp_path / "p.json").write_text('{"ops": []}')
    with pytest.raises(ConfigError, match="p.json: an enhancement pipeline is"):
        Pipeline.parse(str(tmp_path / "p.json"))


def test_parse_presets_specs_and_json(tmp_path):
    assert Pipeline.parse("CLAHE + Denoise") == Pipeline.preset("CLAHE + Denoise")
    pipe = Pipeline.parse("clahe:clip_limit=3, tile_grid=4 + median:ksize=5")
    assert pipe.ops == (("clahe", {"clip_limit": 3.0, "tile_grid": 4}), ("median", {"ksize": 5}))
    assert Pipeline.parse(str(pipe.save(tmp_path / "p.json"))) == pipe
    assert Pipeline.from_dict(json.loads(json.dumps(pipe.to_dict()))) == pipe
    assert pipe.describe() == "clahe(clip_limit=3, tile_grid=4) -> median(ksize=5)"
    assert pipe.with_param(1, "ksize", 7).ops[1][1]["ksize"] == 7
    for name in PRESETS:
        assert Pipeline.preset(name)(_rgb()).dtype == np.uint8


@pytest.mark.parametrize(
    "spec, message",
    [
        ("clahee", "unknown enhancement step 'clahee'.*Did you mean \"clahe\""),
        ("clahe:clip=3", "has no parameter 'clip'.*clip_limit"),
        ("clahe:clip_limit=50", "clip_limit=50 is outside 0.5..10"),
        ("median:ksize=4", "must be odd"),
        ("median:ksize=3.5", "whole number"),
        ("resize:interpolation=bicubic", "not one of"),
        ("gamma:1.5", "key=value"),
        ("missing.json", "cannot read enhancement pipeline"),
        ("median:ksize=inf", "finite number"),
        ("gamma:gamma=nan", "finite number"),
    ],
)
def test_bad_pipelines_say_what_is_wrong(spec, message):
    with pytest.raises(ConfigError, match=message):
        Pipeline.parse(spec)


def test_the_predictor_applies_the_pipeline_before_the_model(trained, synth_classes):
    from inspekt import load_model
    from inspekt.io import list_images, load_image

    model = load_model(trained.bundle)
    files = list_images(synth_classes)[:6]
    plain = model.predict(files)
    same = model.predict(files, enhance=Pipeline.of([("gamma", {"gamma": 1.0})]))
    assert [p.scores for p in plain] == [p.scores for p in same]
    dark = Pipeline.of([("brightness_contrast", {"brightness": -100, "contrast": 0.3})])
    enhanced = model.predict(files, enhance=dark)
    by_hand = model.predict([dark(load_image(f, mode="keep")) for f in files])
    assert [p.scores for p in enhanced] == [p.scores for p in by_hand]
    assert [p.scores for p in enhanced] != [p.scores for p in plain]


def test_cli_predict_with_enhance(trained, synth_classes):
    from inspekt.cli import app

    runner = CliRunner()
    ok = runner.invoke(
        app, ["predict", str(trained.bundle), str(synth_classes), "--json", "--enhance", "CLAHE + Denoise"]
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout.splitlines()[0])["label"]
    bad = runner.invoke(app, ["predict", str(trained.bundle), str(synth_classes), "--enhance", "sharpen"])
    assert bad.exit_code == 2 and "unknown enhancement step 'sharpen'" in bad.output
