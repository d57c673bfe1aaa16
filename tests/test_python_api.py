"""The Python API: lazy top-level names, load_model, and a light import."""

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import inspekt


def test_load_model_predicts(trained, synth_classes):
    predictor = inspekt.load_model(trained.bundle)
    [prediction] = predictor.predict(next((synth_classes / "scratch").iterdir()))
    assert prediction.label in predictor.card.classes and 0 < prediction.score <= 1
    best, runner_up = prediction.top(2)
    assert repr(prediction).startswith(f"<Prediction {Path(prediction.source).name}: {best[0]} · {best[1]:.1%} (then ")
    assert f"{runner_up[0]} {runner_up[1]:.1%}" in repr(prediction)


def test_load_model_warns_of_a_failed_sanity_check_and_of_int8_run_by_torch(trained, synth_classes, tmp_path):
    from inspekt.bundle import copy_bundle, open_bundle
    from inspekt.card import Sanity

    bundle = open_bundle(trained.bundle)
    failed = bundle.card.model_copy(update={"sanity": Sanity(ok=False, why="predicts 'ok' for every image")})
    path = copy_bundle(bundle, tmp_path / "failed.inspekt", card=failed)
    with pytest.warns(UserWarning, match=r"failed\.inspekt failed its training's sanity check: predicts 'ok'"):
        inspekt.load_model(path)
    q8 = copy_bundle(bundle, tmp_path / "q8.inspekt", card=bundle.card.model_copy(update={"precision": "int8"}))
    with pytest.warns(UserWarning, match=r"q8\.inspekt is an INT8 bundle: the torch backend runs its fp32 weights"):
        inspekt.load_model(q8, backend="torch")
    with pytest.warns(UserWarning, match=r"q8\.inspekt is an INT8 bundle: the torch backend"):
        inspekt.evaluate(q8, synth_classes, backend="torch")  # its figures are the fp32 model's: said
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a model that passed, or was never checked, loads quietly; INT8 by ONNX too
        inspekt.load_model(trained.bundle)
        inspekt.load_model(q8)


def test_public_names_resolve():
    for name in inspekt.__all__:
        assert getattr(inspekt, name) is not None


def test_import_does_not_pull_torch():
    code = "import sys, inspekt; inspekt.load_image; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


@pytest.mark.slow
def test_onnx_prediction_never_imports_torch(trained, synth_classes):
    image = next((synth_classes / "ok").iterdir())
    code = (
        "import sys, inspekt; "
        f"inspekt.load_model({str(trained.bundle)!r}).predict({str(image)!r}); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.slow
def test_train_evaluate_explain_from_python(synth_classes, tmp_path):
    """The notebook path: keyword options like the CLI's, each epoch announced as the CLI prints it, then
    evaluate and explain the result."""
    from inspekt import progress

    lines: list[str] = []
    with progress.reporting(progress.PlainReporter(lines.append)):
        result = inspekt.train(
            data=str(synth_classes),
            epochs=2,
            imgsz=32,
            batch=16,
            out=str(tmp_path),
            model_params={"width": 4},
            threads=1,
        )
    assert result.bundle.is_dir() and result.run_dir.parent == tmp_path / "classify"
    epochs = [line for line in lines if line.lstrip().startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"] and all("loss " in line for line in epochs)
    report = inspekt.evaluate(result.bundle, synth_classes)
    assert report.metrics["n"] == 80 and 0 <= report.metrics["macro_f1"] <= 1
    image = inspekt.load_image(next((synth_classes / "pore").iterdir()), mode="keep")
    explanation = inspekt.Explainer.load(result.bundle).explain(image)
    assert explanation.cam.shape == image.shape[:2]
    from PIL import Image

    again = inspekt.Explainer.load(result.bundle).explain(Image.fromarray(image))  # as predict takes it
    assert np.array_equal(again.cam, explanation.cam)
    try:
        inspekt.train(data=str(synth_classes), epochz=3)
    except inspekt.InspektError as exc:
        assert 'Did you mean "epochs"' in str(exc)
    else:
        raise AssertionError("an unknown option was accepted")


def test_train_takes_a_config_with_keyword_overrides_and_names_a_misplaced_argument(tmp_path):
    """``train(TrainConfig(...), epochs=1)`` applies the keyword (it was dropped), a YAML file works as the
    CLI's --config, and a data path given first or ``resume=`` get errors that say what to call instead."""
    from inspekt.config import TrainConfig
    from inspekt.engine.trainer import _train_config

    given = TrainConfig(task="detect", data="d", epochs=40, imgsz=96, model_params={"width": 8, "depth": 3})
    merged = _train_config(given, {"epochs": 1, "imgsz": None, "model_params": {"width": 4}})
    assert (merged.task, merged.data, merged.epochs, merged.imgsz) == ("detect", "d", 1, 96)  # None: not given
    assert merged.model_params == {"width": 4, "depth": 3}  # merged like a YAML file's keys
    assert "batch" not in merged.model_fields_set  # unset keys stay unset: the task's own defaults still apply
    file = tmp_path / "run.yaml"
    file.write_text("task: segment\ndata: masks/\nepochs: 5\n")
    from_file = _train_config(file, {"epochs": 2})
    assert (from_file.task, from_file.data, from_file.epochs) == ("segment", "masks/", 2)
    with pytest.raises(inspekt.InspektError, match=r"not 'split.csv'; give the data by name: inspekt.train\(data="):
        inspekt.train("split.csv", task="detect")
    with pytest.raises(inspekt.InspektError, match=r"call inspekt.resume\(RUN_DIR\)"):
        inspekt.train(resume=str(tmp_path))


def test_profile_images_takes_a_folder_or_one_file(tmp_path):
    """A folder given as one string is listed (it was read as a sequence of one-letter paths)."""
    from inspekt.data.synth import write_dataset

    root = write_dataset(tmp_path / "d", n=12, size=32, seed=0).root
    assert len(inspekt.profile_images(str(root)).files) == 12
    assert len(inspekt.profile_images(root / "pore").files) == 3
    one = inspekt.profile_images(next((root / "pore").iterdir()))
    assert len(one.files) == 1 and not one.skipped


def test_predict_takes_pil_images_and_array_variants_and_refuses_the_rest_by_name(trained, tmp_path):
    """PIL images, HxWx1 and RGBA arrays are converted; each array is named by its place; a float, 16-bit,
    batched or empty array, a non-image object and string keywords get an InspektError saying what to do."""
    from PIL import Image

    model = inspekt.load_model(trained.bundle)
    rgb = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    plain = model.predict([rgb, rgb])
    assert [p.source for p in plain] == ["<array 0>", "<array 1>"]
    from inspekt.io import save_image

    save_image(tmp_path / "a.png", rgb)
    paths = np.array([str(tmp_path / "a.png")] * 2)  # a table's column of paths (df.path.values)
    assert [p.scores for p in model.predict(paths)] == [plain[0].scores] * 2
    converted = model.predict([Image.fromarray(rgb), rgb[:, :, :1], np.dstack([rgb, np.full((40, 40), 255, np.uint8)])])
    assert converted[0].scores == plain[0].scores  # the PIL image is the same pixels
    assert converted[2].scores == plain[0].scores  # opaque RGBA: the RGB pixels
    assert model.predict(rgb[:, :, 0])[0].scores == converted[1].scores  # HxWx1 = HxW
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees": a phone photo held upright
    Image.fromarray(rgb[:, :20]).save(tmp_path / "turned.jpg", exif=exif)
    from inspekt.io.arrays import as_image

    with Image.open(tmp_path / "turned.jpg") as opened:  # the PIL image is its file's pixels: turned upright
        pixels, (from_pil,) = as_image(opened, "x"), model.predict(opened)
    assert np.array_equal(pixels, inspekt.load_image(tmp_path / "turned.jpg", mode="keep")) and pixels.shape[:2] == (
        20,
        40,
    )
    assert from_pil.scores == model.predict(tmp_path / "turned.jpg")[0].scores
    refused = {
        r"a float64 array; images are uint8 \(0..255\): convert it, e.g. \(a \* 255\).round\(\)": rgb / 255.0,
        r"a uint16 array; .*\(a // 257\)": rgb.astype(np.uint16),
        r"a 1x40x40x3 array is a batch; pass its images as a list: list\(batch\)": rgb[None],
        "the 0x0x3 array holds no pixels": np.zeros((0, 0, 3), np.uint8),
        "int '5' is not an image; give a path, bytes": 5,
        "NoneType 'None' is not an image": None,
    }
    for message, bad in refused.items():
        with pytest.raises(inspekt.InspektError, match=r"images\[0\]: " + message):
            model.predict(bad)
    for keywords in ({"threshold": "0.3"}, {"min_area": "10"}, {"batch_size": "4"}, {"threads": "2"}):
        (key,) = keywords
        with pytest.raises(inspekt.InspektError, match=f"{key}=str"):
            inspekt.load_model(trained.bundle, **keywords)
    with pytest.raises(inspekt.InspektError, match="threshold=str '0.1' must be a number"):
        model.with_threshold("0.1")
