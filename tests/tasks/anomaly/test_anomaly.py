"""Anomaly detection end to end on tiny synthetic data: the contract test over every registered
method (fit, predict, save, load, export parity, thresholds with and without anomalous validation),
localisation of a synthetic defect, calibration and metrics, the Predictor, evaluation and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspekt.bundle import open_bundle
from inspekt.cli import app
from inspekt.config import TrainConfig
from inspekt.drift.sources import bundle_reference
from inspekt.engine.evaluator import evaluate
from inspekt.engine.predictor import Predictor
from inspekt.engine.trainer import train
from inspekt.errors import ConfigError, DatasetError
from inspekt.io import save_image
from inspekt.models import create_model, list_models
from inspekt.tasks import TASKS
from inspekt.tasks.anomaly.metrics import PixelTally, best_f1_threshold, calibrate
from inspekt.tasks.anomaly.predict import normalise

runner = CliRunner()
SIZE = 64
# Settings that make each method fit in seconds on 64-pixel images (quality is the benchmarks' job).
FAST = {
    "ae_ssim": {"width": 8, "latent": 16},
    "draem": {"width": 4, "epoch_images": 64},
    "padim": {"d": 16},
    "patchcore": {"coreset_ratio": 0.5},
    "template_ratio": {"classifier_width": 4},
}


def _normal(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """A normal part: a smooth left-to-right gradient with a faint texture."""
    ramp = np.linspace(90, 160, size)[None, :].repeat(size, 0)
    return np.clip(ramp + rng.normal(0, 3, (size, size)), 0, 255).astype(np.uint8)


def _defective(rng: np.random.Generator, box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A normal part with a dark square at ``box`` (y, x, h, w), and its mask."""
    image, mask = _normal(rng), np.zeros((SIZE, SIZE), np.uint8)
    y, x, h, w = box
    image[y : y + h, x : x + w] = 15
    mask[y : y + h, x : x + w] = 255
    return image, mask


def _write_mvtec(root: Path, n_train: int = 24, n_test: int = 6, seed: int = 0) -> Path:
    """MVTec layout: train/good, test/good, test/dark with ground_truth masks."""
    rng = np.random.default_rng(seed)
    for i in range(n_train):
        save_image(root / "train" / "good" / f"{i:03d}.png", _normal(rng))
    for i in range(n_test):
        save_image(root / "test" / "good" / f"{i:03d}.png", _normal(rng))
        y, x = rng.integers(4, SIZE - 20, size=2)
        image, mask = _defective(rng, (int(y), int(x), 14, 14))
        save_image(root / "test" / "dark" / f"{i:03d}.png", image)
        save_image(root / "ground_truth" / "dark" / f"{i:03d}_mask.png", mask)
    return root


@pytest.fixture(scope="module")
def mvtec(tmp_path_factory) -> Path:
    return _write_mvtec(tmp_path_factory.mktemp("anomaly") / "parts")


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> Path:
    """Class folders without splits: good/ and dark/ (the dark images become anomalous validation)."""
    root, rng = tmp_path_factory.mktemp("anomaly") / "folders", np.random.default_rng(1)
    for i in range(20):
        save_image(root / "good" / f"{i:03d}.png", _normal(rng))
    for i in range(5):
        save_image(root / "dark" / f"{i:03d}.png", _defective(rng, (20, 20, 12, 12))[0])
    return root


def _config(data: Path, out: Path, model: str, **options) -> TrainConfig:
    settings = {"imgsz": SIZE, "epochs": 1, "batch": 8, "threads": 1, "model_params": FAST.get(model, {})}
    return TrainConfig(task="anomaly", data=str(data), model=model, out=str(out), **(settings | options))


@pytest.mark.slow
@pytest.mark.parametrize("method", list_models("anomaly"))
def test_every_method_fits_predicts_exports_and_reloads(method, mvtec, folders, tmp_path):
    """The contract: fit, bundle with ONNX parity, reload with both backends, thresholds with and
    without anomalous validation images."""
    result = train(_config(mvtec, tmp_path, method))
    assert result.parity.ok, result.parity
    card = open_bundle(result.bundle).card
    assert card.task == "anomaly" and card.architecture == method
    assert "quantile" in card.anomaly.calibration  # MVTec train has only normal images
    test_files = sorted(str(p) for p in (mvtec / "test").rglob("*.png"))
    onnx = Predictor.load(result.bundle).predict(test_files)
    torch_ = Predictor.load(result.bundle, backend="torch").predict(test_files)
    assert len(onnx) == len(test_files)
    for a, b in zip(onnx, torch_):
        assert a.heatmap.shape == (SIZE, SIZE) and a.mask.shape == (SIZE, SIZE)
        assert 0 <= a.score <= 1 and a.label in card.classes
        assert abs(a.extra["raw_score"] - b.extra["raw_score"]) <= 1e-3 * max(1.0, abs(b.extra["raw_score"]))
        assert (a.reconstruction is not None) == ("reconstruction" in card.outputs)
    # the torch backend rebuilt the network from card.params + weights.safetensors (strict): same outputs
    with_anomalies = train(_config(folders, tmp_path, method))
    assert "best F1" in open_bundle(with_anomalies.bundle).card.anomaly.calibration


@pytest.mark.slow
@pytest.mark.parametrize("method", ["draem", "ae_ssim", "padim", "patchcore", "template_ratio"])
def test_the_map_peaks_on_a_synthetic_defect(method, tmp_path):
    data = tmp_path / "parts"
    rng = np.random.default_rng(5)
    for i in range(40):
        save_image(data / "good" / f"{i:03d}.png", _normal(rng))
    box = (38, 12, 12, 12)
    image, mask = _defective(np.random.default_rng(99), box)
    epochs = {"ae_ssim": 15, "draem": 25}.get(method, 1)
    result = train(_config(data, tmp_path / "runs", method).model_copy(update={"epochs": epochs}))
    (prediction,) = Predictor.load(result.bundle).predict_arrays([image])
    peak_y, peak_x = np.unravel_index(np.argmax(prediction.heatmap), prediction.heatmap.shape)
    y, x, h, w = box
    assert y - 4 <= peak_y < y + h + 4 and x - 4 <= peak_x < x + w + 4, (peak_y, peak_x)
    assert prediction.heatmap[mask > 0].mean() > prediction.heatmap[mask == 0].mean()


def test_an_unfitted_method_refuses_to_score():
    import torch

    network = create_model("ae_ssim", in_chans=1, input_size=32)
    with pytest.raises(RuntimeError, match="not fitted"):
        network(torch.zeros(1, 1, 32, 32))


def test_calibration_rules():
    rng = np.random.default_rng(0)
    normal, anomalous = rng.normal(0, 1, 400), rng.normal(4, 1, 80)
    quantile = calibrate(normal, None, "auto", 0.99, 3.0)
    assert "quantile" in quantile.method and (normal < quantile.threshold).mean() >= 0.99
    sigma = calibrate(normal, None, "sigma", 0.99, 2.0)
    assert sigma.threshold == pytest.approx(normal.mean() + 2 * normal.std())
    f1 = calibrate(normal, anomalous, "auto", 0.99, 3.0)
    assert "best F1" in f1.method and 1.0 < f1.threshold < 3.5
    # the median normal score lands on 0.05 and the threshold exactly on 0.5; far scores stay ordered
    assert normalise(f1.threshold, f1.threshold, f1.scale) == pytest.approx(0.5)
    assert normalise(np.median(normal), f1.threshold, f1.scale) == pytest.approx(0.05, abs=1e-4)
    far = normalise(f1.threshold + np.array([100.0, 1000.0]) * f1.scale, f1.threshold, f1.scale)
    assert far[0] < far[1] < 1.0
    with pytest.raises(ValueError, match="anomalous validation images"):
        calibrate(normal, None, "f1", 0.99, 3.0)


def test_calibration_never_collapses_onto_the_scores():
    flat = calibrate(np.full(10, 2.0), None, "quantile", 0.995, 3.0)
    assert flat.threshold > 2.0 and "not discriminating" in flat.warning  # all equal: none flagged, said so
    single = calibrate(np.array([2.0]), None, "quantile", 0.995, 3.0)
    assert single.threshold > 2.0 and "single normal validation image" in single.warning  # the real cause
    few = calibrate(np.array([1.0, 2.0, 3.0]), None, "quantile", 0.995, 3.0)
    assert few.threshold > 3.0 and "largest score" in few.method
    threshold, f1 = best_f1_threshold(np.array([0.1, 0.2, 0.3]), np.array([0.8, 0.9]))
    assert 0.3 < threshold < 0.8 and f1 == 1.0
    # a best-F1 threshold that would flag every normal image falls back to the quantile rule, and says so
    inverted = calibrate(np.array([1.0, 2.0, 3.0]), np.array([0.5, 0.6]), "auto", 0.995, 3.0)
    assert inverted.threshold > 3.0 and "quantile rule was used" in inverted.warning
    with pytest.raises(ValueError, match="non-finite"):
        calibrate(np.array([1.0, np.nan]), None, "auto", 0.995, 3.0)


def test_pixel_metrics_match_exact_computation():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    tally, values, labels = PixelTally(), [], []
    for _ in range(6):
        truth = np.zeros((32, 32), bool)
        truth[8:16, 4:20] = True
        heat = rng.random((32, 32)).astype(np.float32)
        heat[truth] = np.clip(heat[truth] + 0.3, 0, 1)
        tally.add(heat, truth)
        values.append(heat.ravel())
        labels.append(truth.ravel())
    exact = roc_auc_score(np.concatenate(labels), np.concatenate(values))
    assert tally.auroc() == pytest.approx(exact, abs=5e-3)
    perfect = PixelTally()
    truth = np.zeros((16, 16), bool)
    truth[2:6, 2:6] = True
    perfect.add(truth.astype(np.float32) * 0.98 + 0.01, truth)
    assert perfect.auroc() == pytest.approx(1.0) and perfect.aupro() == pytest.approx(1.0, abs=1e-3)
    assert PixelTally().aupro() is None


@pytest.fixture(scope="module")
def padim_run(mvtec, tmp_path_factory):
    return train(_config(mvtec, tmp_path_factory.mktemp("runs"), "padim"))


def test_thresholds_are_adjustable_at_predict_time(padim_run, mvtec):
    files = sorted(str(p) for p in (mvtec / "test").rglob("*.png"))
    predictor = Predictor.load(padim_run.bundle)
    base = predictor.predict(files)
    strict = predictor.with_threshold(0.999, pixel_threshold=0.999).predict(files)
    lenient = predictor.with_threshold(0.0, pixel_threshold=0.0).predict(files)
    assert all(p.label == "anomaly" for p in lenient) and all(p.mask.all() for p in lenient)
    assert sum(p.label == "anomaly" for p in strict) <= sum(p.label == "anomaly" for p in base)
    assert [p.score for p in strict] == [p.score for p in base]  # the score itself never moves
    normal = next(p for p in strict if p.label == "good")  # its score is the anomaly score, not "how good"
    assert f": good · anomaly score {normal.score:.3f} (" in repr(normal)
    with pytest.raises(ConfigError, match="pixel-threshold"):
        Predictor.load(padim_run.bundle, pixel_threshold=1.5)


def test_evaluation_scores_images_and_pixels(padim_run, mvtec, tmp_path):
    from inspekt.tasks.anomaly.evaluate import write_plots

    result = evaluate(padim_run.bundle, mvtec)
    m = result.metrics
    assert result.split == "test" and len(result.rows) == 12 and m["tp"] + m["fn"] == 6
    assert m["image_auroc"] > 0.8 and m["pixel_auroc"] > 0.8 and 0 < m["aupro"] <= 1
    written = write_plots(result, Predictor.load(padim_run.bundle), tmp_path / "plots")
    assert (tmp_path / "plots" / "scores.png") in written
    assert json.loads(json.dumps(result.to_dict()))["metrics"]["image_auroc"] == m["image_auroc"]


def test_rescoring_at_a_threshold_gives_what_evaluating_with_it_stored_gives(padim_run, mvtec, tmp_path):
    from inspekt.bundle import copy_bundle
    from inspekt.engine.evaluator import save_threshold
    from inspekt.tasks.anomaly.evaluate import rescore_anomaly

    bundle = copy_bundle(open_bundle(padim_run.bundle), tmp_path / "m.inspekt", archive=True)
    result = evaluate(bundle, mvtec)
    on_scores = sorted(r["score"] for r in result.rows)[5:7]  # thresholds exactly at two images' scores
    for threshold in (*on_scores, 0.2, 0.5, 0.9, 1.0):  # 1.0 last: "stored" below is at it
        save_threshold(bundle, threshold)
        stored = evaluate(bundle, mvtec)
        rescored = rescore_anomaly(result, threshold)
        assert [r["verdict"] for r in rescored.rows] == [r["verdict"] for r in stored.rows]
        for key in ("tp", "fp", "tn", "fn", "f1", "escape_rate", "false_reject_rate"):
            assert rescored.metrics[key] == stored.metrics[key], (threshold, key)
    task = TASKS["anomaly"]
    assert "F1 is 0.00 (100% of the defects pass" in task.threshold_note(stored)  # nothing scores 1.0
    best = task.choose_threshold(result, "best-f1")
    assert task.threshold_note(rescore_anomaly(result, best)) is None
    # two normal images among twenty defects: best F1 flags everything, so it is refused (and not suggested)
    from dataclasses import replace

    normal, anomalous = ([r for r in result.rows if r["anomalous"] == flag] for flag in (False, True))
    rows = [normal[0] | {"score": 0.3}, normal[1] | {"score": 0.35}]
    rows += [anomalous[i % len(anomalous)] | {"score": 0.1 + 0.04 * i} for i in range(20)]
    lopsided = replace(result, rows=rows)
    with pytest.raises(ConfigError, match="would flag every one of the 2 normal images .* e.g. 0.3475, which passes"):
        task.choose_threshold(lopsided, "best-f1")
    assert task.threshold_note(lopsided) is None


@pytest.mark.slow
def test_cli_train_predict_eval(mvtec, tmp_path):
    out = runner.invoke(
        app,
        [
            "train",
            "anomaly",
            "--data",
            str(mvtec),
            "--model",
            "padim",
            "--imgsz",
            str(SIZE),
            "--out",
            str(tmp_path / "runs"),
            "--json",
            "model_params.d=16",
        ],
    )
    assert out.exit_code == 0, out.output
    bundle = json.loads(out.stdout)["bundle"]
    assert "random weights" in " ".join(json.loads(out.stdout)["notes"])
    reference = bundle_reference(bundle)  # the drift baseline: predictions on normal images it was not fitted to
    assert reference.model["files"] and set(reference.model["files"]).isdisjoint(reference.files)
    shown = runner.invoke(
        app, ["predict", bundle, str(mvtec / "test" / "dark"), "--save-dir", str(tmp_path / "pred"), "--csv"]
    )
    assert shown.exit_code == 0, shown.output
    assert "anomaly_area_pct" in shown.stdout.splitlines()[0]
    assert len(list((tmp_path / "pred").glob("*_mask.png"))) == 6
    everything = runner.invoke(
        app, ["predict", bundle, str(mvtec / "test" / "good"), "--json", "--threshold", "0", "--pixel-threshold", "0"]
    )
    rows = [json.loads(line) for line in everything.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 6 and all(r["label"] == "anomaly" and r["anomaly_area_pct"] == 100.0 for r in rows)
    scored = runner.invoke(
        app,
        ["eval", bundle, "--data", str(mvtec), "--plots", str(tmp_path / "plots"), "--csv", str(tmp_path / "rows.csv")],
    )
    assert scored.exit_code == 0, scored.output
    assert "image AUROC" in scored.stdout and "AUPRO" in scored.stdout
    before_f1 = evaluate(bundle, mvtec).metrics["f1"]
    stored = runner.invoke(app, ["eval", bundle, "--data", str(mvtec), "--set-threshold", "best-f1"])
    assert stored.exit_code == 0, stored.output
    decision = open_bundle(bundle).card.anomaly.decision
    said = stored.output.replace("\n", " ")
    assert f"stored normalised anomaly-score threshold {decision:g}" in said and "run eval again" not in said
    assert "note: it was chosen on these 12 images (split test), so the scores below flatter it" in said
    now = evaluate(bundle, mvtec).metrics["f1"]
    assert f"F1 at the threshold │ {now:.3f} │" in " ".join(stored.output.split())  # the table is scored at it
    assert evaluate(bundle, mvtec).metrics["f1"] >= before_f1  # best F1 on this very split: never worse
    fixed = runner.invoke(app, ["eval", bundle, "--data", str(mvtec), "--set-threshold", "0.7"])
    assert fixed.exit_code == 0 and open_bundle(bundle).card.anomaly.decision == 0.7


def test_clear_errors(mvtec, folders, tmp_path):
    with pytest.raises(ConfigError, match='Did you mean "padim"'):
        train(_config(mvtec, tmp_path, "padm"))
    with pytest.raises(DatasetError, match="normal='fine'"):
        train(_config(folders, tmp_path, "padim", normal="fine"))
    no_normal = tmp_path / "nonormal"
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        for i in range(3):
            save_image(no_normal / name / f"{i}.png", _normal(rng))
    with pytest.raises(DatasetError, match="normal=<class>"):
        train(_config(no_normal, tmp_path, "padim"))
    with pytest.raises(ConfigError, match="no such CSV"):
        train(_config(mvtec, tmp_path, "padim", groups=str(tmp_path / "missing.csv")))
    with pytest.raises(ConfigError, match="cannot be built"):
        create_model("padim", in_chans=1, input_size=50)
    with pytest.raises(ConfigError, match="model_params.input_size is set from"):
        train(_config(mvtec, tmp_path, "padim").model_copy(update={"model_params": {"input_size": 64}}))


@pytest.mark.slow
def test_tiled_training_and_prediction_of_large_images(tmp_path):
    """resize=tile: fit on windows, predict on overlapping windows of a larger image; the map covers
    the whole image at its original size and still finds the defect."""
    data, rng = tmp_path / "large", np.random.default_rng(3)
    for i in range(12):
        save_image(data / "good" / f"{i:03d}.png", _normal(rng, 96))
    cfg = _config(data, tmp_path / "runs", "padim").model_copy(update={"imgsz": 32, "resize": "tile"})
    result = train(cfg)
    card = open_bundle(result.bundle).card
    assert card.input.resize == "tile" and card.input.size == (32, 32)
    image = _normal(np.random.default_rng(7), 96)
    image[60:72, 20:32] = 10
    (prediction,) = Predictor.load(result.bundle).predict_arrays([image])
    assert prediction.heatmap.shape == (96, 96)
    peak_y, peak_x = np.unravel_index(np.argmax(prediction.heatmap), prediction.heatmap.shape)
    assert 54 <= peak_y < 78 and 14 <= peak_x < 38, (peak_y, peak_x)


@pytest.mark.slow
def test_feature_methods_load_a_local_pretrained_backbone(mvtec, tmp_path):
    """--weights FILE: a local timm state dict (here: a differently seeded resnet18 stands in for a
    published one) is loaded by name, the card says so, and a wrong file is refused with its name."""
    import timm
    import torch
    from safetensors.torch import save_file

    torch.manual_seed(123)
    weights = tmp_path / "resnet18.safetensors"
    save_file(
        {k: v.contiguous() for k, v in timm.create_model("resnet18", pretrained=False).state_dict().items()},
        str(weights),
    )
    result = train(
        _config(mvtec, tmp_path, "padim").model_copy(update={"model_params": {"d": 16, "weights": str(weights)}})
    )
    notes = " ".join(open_bundle(result.bundle).card.notes)
    assert "pretrained weights" in notes and "resnet18.safetensors" in notes and "random weights" not in notes
    save_file({"conv1.weight": torch.zeros(3, 3, 3, 3)}, str(tmp_path / "wrong.safetensors"))
    with pytest.raises(ConfigError, match="wrong.safetensors"):
        create_model("patchcore", in_chans=1, input_size=64, weights=str(tmp_path / "wrong.safetensors"))


@pytest.mark.slow
@pytest.mark.parametrize("method", ["draem", "ae_ssim", "template_ratio"])
def test_trained_methods_resume_exactly_through_the_one_loop(method, mvtec, tmp_path):
    """The methods that learn by gradient descent train through the trainer's loop: results.csv every
    epoch, Ctrl-C keeps a bundle, and resume continues exactly as an uninterrupted run."""
    from inspekt.engine.trainer import resume

    reference = train(_config(mvtec, tmp_path, method, epochs=3, name="reference"))

    def interrupt_after_two(row):
        if row.get("epoch") == 2:
            raise KeyboardInterrupt

    stopped = train(_config(mvtec, tmp_path, method, epochs=3, name="stopped"), on_epoch=interrupt_after_two)
    assert stopped.interrupted and [r["epoch"] for r in stopped.history] == [1, 2]
    assert (stopped.run_dir / "results.csv").is_file() and Path(stopped.bundle).is_dir()
    finished = resume(stopped.run_dir)
    assert not finished.interrupted
    losses = lambda result: [row["train_loss"] for row in result.history]  # noqa: E731
    assert losses(finished) == losses(reference)
    images = sorted((mvtec / "test").rglob("*.png"))
    expected = [p.score for p in Predictor.load(reference.bundle).predict(images)]
    assert [p.score for p in Predictor.load(finished.bundle).predict(images)] == pytest.approx(expected, abs=1e-6)
    with pytest.raises(ConfigError, match="already finished"):
        resume(stopped.run_dir)


def test_parity_is_judged_relative_to_the_map_scale(padim_run, mvtec, tmp_path):
    """PaDiM's Mahalanobis maps reach the hundreds, where float32 rounding alone makes ONNX and torch
    differ by more than 1e-4 (its bundle was refused); the allowance follows each output's scale."""
    import torch

    from inspekt.bundle import open_bundle
    from inspekt.engine.predictor import Predictor
    from inspekt.models.runtime import check_parity, export_onnx, load_network, save_bundle

    bundle = open_bundle(padim_run.bundle)
    network, card = load_network(bundle), bundle.card
    with torch.no_grad():
        network.precision_factor.mul_(1000)  # the same maps at 1000x their values, as a real photo's can be
    parity = check_parity(network, export_onnx(network, card), card)
    assert parity.scale > 100 and parity.max_abs_diff > 1e-4  # beyond the old absolute rule ...
    assert parity.ok and parity.worst <= 1.0  # ... and well within float32 rounding of such values
    written, _ = save_bundle(network, card, tmp_path / "loud", overwrite=True)
    files = sorted(str(p) for p in (mvtec / "test").rglob("*.png"))
    onnx, torch_ = (Predictor.load(written, backend=b).predict(files) for b in ("onnx", "torch"))
    assert [p.label for p in onnx] == [p.label for p in torch_]
    assert [p.extra.get("raw_score") for p in onnx] == pytest.approx(
        [p.extra.get("raw_score") for p in torch_], rel=1e-5
    )


def test_the_defect_images_that_set_the_threshold_are_recorded_as_seen(tmp_path):
    """With no test split, defect images calibrate the threshold: evaluating on them is not on unseen images."""
    from inspekt.bundle import open_bundle
    from inspekt.data.dataset import image_key
    from inspekt.data.synth import write_dataset
    from inspekt.engine.predictor import seen_by
    from inspekt.engine.trainer import train

    root = write_dataset(tmp_path / "mv", n=24, size=32, seed=2, layout="mvtec").root
    images = sorted(p for p in root.rglob("*.png") if "ground_truth" not in p.parts)
    rows = [f"{p},{'good' if p.parent.name == 'good' else 'defect'}" for p in images]
    (tmp_path / "list.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    result = train(task="anomaly", data=str(tmp_path / "list.csv"), model="padim", imgsz=32, out=str(tmp_path / "r"))
    seen = seen_by(open_bundle(result.bundle))
    defects = [p for p in images if p.parent.name != "good"]
    assert defects and all(image_key(p) in seen["val"] for p in defects)
    assert not seen["train"] & {image_key(p) for p in defects}  # never fitted to
