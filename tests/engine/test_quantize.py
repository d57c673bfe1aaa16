"""INT8 export: static quantisation, the accuracy and speed gates, calibration data errors, the CLI.

Whether INT8 is faster depends on the CPU running the tests (tiny models on AVX2-only CPUs often are
not), so every test but one replaces the speed measurement with fixed figures (``fixed_speed``)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from typer.testing import CliRunner

from inspekt.bundle import ONNX, WEIGHTS, copy_bundle, open_bundle
from inspekt.card import AnomalySpec, DataInfo, InputSpec, ModelCard, Sanity
from inspekt.cli import app
from inspekt.data.dataset import image_key
from inspekt.engine import quant_speed
from inspekt.engine.export import export_bundle
from inspekt.engine.predictor import Predictor, seen_by
from inspekt.engine.quant_recipe import prepare, quantize_onnx, recipes_for
from inspekt.engine.quant_report import QuantReport, acceptance, pick_refusal, refuse_if_failed
from inspekt.engine.quant_speed import cpu_flags
from inspekt.engine.quantize import AccuracyDropError, SlowerInt8Error, quantize_bundle
from inspekt.errors import ConfigError, DatasetError
from inspekt.io import list_images, save_image
from inspekt.models.runtime import load_network, save_bundle
from inspekt.transforms import preprocess_batch

runner = CliRunner()
LEVELS = {"dark": (20, 60), "bright": (170, 230)}  # pixel value ranges of the two brightness classes
FAST = {1: 1.5, 16: 1.25}


def _timer(figures: dict[int, float]):
    return lambda fp32, int8, images: dict(figures)


@pytest.fixture(autouse=True)
def fixed_speed(monkeypatch):
    """INT8 measures 1.5x / 1.25x fp32's speed (the real measurement has its own test)."""
    monkeypatch.setattr("inspekt.engine.quantize.measure_speedup", _timer(FAST))


def _write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label", "split"])
        writer.writeheader()
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def brightness(tmp_path_factory):
    """A 2-class grey model that tells dark from bright images (trained to 100% here, in well under
    a second), its images, and two calibration CSVs: representative (dark and bright) and skewed
    (dark only). The card normalises with mean 0 / std 1, so every input is >= 0 and dark-only
    calibration clips bright inputs down to dark levels: a real, deterministic accuracy loss.
    Its convolutions are all narrow (1 to 8 channels), so only one recipe is ever tried."""
    return _brightness(tmp_path_factory.mktemp("brightness"), width=1)


@pytest.fixture(scope="module")
def wide_brightness(tmp_path_factory):
    """The same task with 16-channel convolutions: only the first (1 input channel, 3x3) is narrow."""
    return _brightness(tmp_path_factory.mktemp("wide"), width=16)


def _brightness(root: Path, width: int) -> dict:
    import torch

    from inspekt.models import create_model

    rng = np.random.default_rng(0)
    rows = {"train": [], "val": []}
    images, labels = [], []
    for split, count in (("train", 12), ("val", 12)):
        for label, (low, high) in LEVELS.items():
            for i in range(count):
                image = rng.integers(low, high, (16, 16), dtype=np.uint8)
                save_image(root / split / label / f"{i}.png", image)
                rows[split].append({"path": f"{split}/{label}/{i}.png", "label": label, "split": split})
                images.append(image)
                labels.append(label == "bright")
    card = ModelCard(
        task="classify",
        architecture="tiny_cnn",
        params={"num_classes": 2, "in_chans": 1, "width": width},
        classes=("bright", "dark"),
        input=InputSpec(size=(16, 16), channels=1, mean=(0.0,), std=(1.0,)),
    )
    torch.manual_seed(0)
    network = create_model("tiny_cnn", num_classes=2, in_chans=1, width=width, dropout=0.0)
    x = torch.from_numpy(preprocess_batch(images, card.input)[0])
    y = torch.tensor([0 if bright else 1 for bright in labels])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: one thread is many times faster on a busy machine
    try:
        for _ in range(30):  # plain gradient descent
            network.zero_grad()
            torch.nn.functional.cross_entropy(network(x), y).backward()
            with torch.no_grad():
                for param in network.parameters():
                    param -= 0.5 * param.grad
    finally:
        torch.set_num_threads(threads)
    bundle, _ = save_bundle(network.eval(), card, root / "model", samples=x[:4].numpy())
    skewed = [r for r in rows["train"] if r["label"] == "dark"] + rows["val"]
    return {
        "bundle": bundle,
        "good": _write_csv(root / "good.csv", rows["train"] + rows["val"]),
        "skewed": _write_csv(root / "skewed.csv", skewed),
        "root": root,
    }


@pytest.fixture
def vnni_recipe(monkeypatch):
    """Quantise with the VNNI recipe (every conv in 8 bits, the input too) whatever this CPU is: dark-only
    calibration then clips bright inputs at the graph's input, the deterministic loss these tests need
    (the AVX2 recipe keeps the first conv in fp32, whose input is not clipped)."""
    monkeypatch.setattr("inspekt.engine.quantize.cpu_flags", lambda: ("avx2", "avx512f", "avx512_vnni"))


def _graph_ops(bundle_path: Path) -> set[str]:
    return {node.op_type for node in onnx.load_from_string(open_bundle(bundle_path).read(ONNX)).graph.node}


def test_int8_bundle_loads_in_the_predictor_and_agrees_with_fp32(trained, synth_classes, tmp_path):
    source = copy_bundle(open_bundle(trained.bundle), tmp_path / "model.inspekt")
    # the session's tiny model (~0.57 accurate) has many images near a class boundary: a loose limit here; the
    # limits themselves are tested on the brightness model below
    report = quantize_bundle(source, calib=synth_classes, max_drop=0.05, min_agreement=0.9)
    assert report.path == tmp_path / "model-int8.inspekt" and report.path.is_file()
    # the training folder has no splits: the 64 images the model trained on calibrate (the bundle's record),
    # the 16 it never trained on judge
    assert report.n_images == 16 and report.n_calib == 64 and not report.skipped
    assert report.size_int8 < report.size_fp32
    int8 = open_bundle(report.path)
    assert int8.card.precision == "int8"
    assert int8.card.metrics["int8_accuracy"] == round(report.quality["accuracy"][1], 4)
    assert int8.card.metrics["fp32_accuracy"] == round(report.quality["accuracy"][0], 4)
    assert int8.card.metrics["int8_macro_f1"] == round(report.quality["macro_f1"][1], 4)
    assert {"QuantizeLinear", "DequantizeLinear"} <= _graph_ops(report.path)
    assert int8.read(WEIGHTS) == open_bundle(source).read(WEIGHTS)
    load_network(int8)  # the torch weights are still the fp32 ones
    trained_on = seen_by(open_bundle(source))["train"]
    files = [f for f in list_images(synth_classes) if image_key(f) not in trained_on]
    fp32_labels = [p.label for p in Predictor.load(source).predict(files)]
    int8_labels = [p.label for p in Predictor.load(report.path).predict(files)]
    agreement = np.mean([a == b for a, b in zip(fp32_labels, int8_labels)])
    assert len(files) == 16 and agreement >= 0.9 and agreement == pytest.approx(report.agreement)


def test_representative_calibration_passes_where_skewed_calibration_is_refused(brightness, tmp_path, vnni_recipe):
    good = quantize_bundle(brightness["bundle"], tmp_path / "good.inspekt", calib=brightness["good"])
    assert good.quality["accuracy"][0] == 1.0 and good.drop <= 0.01 and good.n_images == 24 and good.n_calib == 24
    out = tmp_path / "skewed.inspekt"
    with pytest.raises(AccuracyDropError) as refused:
        quantize_bundle(brightness["bundle"], out, calib=brightness["skewed"])
    report = refused.value.report
    assert report.path is None and report.drop > 0.01 and report.n_calib == 12
    fp32, int8 = report.quality["accuracy"]
    assert report.drop >= fp32 - int8 > 0.01
    message = str(refused.value)
    assert "\n" not in message and "--max-drop" in message and "max_drop=" in message and " in Python)" in message
    assert f"accuracy drops {(fp32 - int8) * 100:.2f} points ({fp32:.4f} -> {int8:.4f}" in message
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["good.inspekt"]
    assert good.agreement >= 0.95 and good.quality["macro_f1"][1] >= good.quality["macro_f1"][0] - 0.01
    assert report.agreement < 0.95 and "labels agree with fp32 on" in message and "--min-agreement" in message
    with pytest.raises(AccuracyDropError, match="labels agree"):  # an accepted drop alone is not enough
        quantize_bundle(brightness["bundle"], out, calib=brightness["skewed"], max_drop=1.0)
    accepted = quantize_bundle(brightness["bundle"], out, calib=brightness["skewed"], max_drop=1.0, min_agreement=0)
    assert accepted.path == out and accepted.drop == pytest.approx(report.drop)


def test_without_calib_the_training_data_is_used_or_its_absence_explained(brightness, tmp_path):
    bundle = open_bundle(brightness["bundle"])
    for name, source in (("here", brightness["good"]), ("gone", tmp_path / "moved-away")):
        card = bundle.card.model_copy(update={"data": DataInfo(source=str(source))})
        copy_bundle(bundle, tmp_path / name, archive=False, card=card)
    assert quantize_bundle(tmp_path / "here").n_images == 24
    with pytest.raises(ConfigError, match=r"moved-away\) is not there; pass --calib DATA"):
        quantize_bundle(tmp_path / "gone")
    assert not (tmp_path / "gone-int8.inspekt").exists()


def test_unusable_calibration_data_is_refused_with_the_reason(brightness, synth_classes, tmp_path):
    with pytest.raises(DatasetError, match=r"labels \['lop', 'ok', 'pore', 'scratch'\] are not among the model's"):
        quantize_bundle(brightness["bundle"], tmp_path / "a.inspekt", calib=synth_classes)
    few = _write_csv(
        tmp_path / "few.csv",
        [{"path": str(p), "label": p.parent.name, "split": ""} for p in list_images(brightness["root"] / "val")[:5]],
    )
    with pytest.raises(DatasetError, match="only 5 calibration image"):
        quantize_bundle(brightness["bundle"], tmp_path / "b.inspekt", calib=few)
    flat = tmp_path / "flat"
    shutil.copytree(brightness["root"] / "val" / "dark", flat)
    with pytest.raises(DatasetError, match="no labels"):
        quantize_bundle(brightness["bundle"], tmp_path / "c.inspekt", calib=flat)
    assert not any(tmp_path.glob("*.inspekt"))


def test_judging_images_without_some_of_the_classes_are_named(brightness, tmp_path):
    """A --calib set whose held-out images hold only dark ones scores INT8 on dark images alone: said, once."""
    rows = [
        {"path": str(brightness["root"] / "train" / c / f"{i}.png"), "label": c, "split": "train"}
        for c in ("bright", "dark")
        for i in range(12)
    ]
    rows += [
        {"path": str(brightness["root"] / "val" / "dark" / f"{i}.png"), "label": "dark", "split": "val"}
        for i in range(12)
    ]
    dark_only = _write_csv(tmp_path / "dark-val.csv", rows)
    args = ["export", str(brightness["bundle"]), "--int8", "--allow-slower"]
    out = runner.invoke(app, [*args, "--calib", str(dark_only), "--out", str(tmp_path / "m.inspekt")])
    said = " ".join(out.stderr.split())
    assert out.exit_code == 0, out.output
    assert said.count("the 12 images that judge INT8 hold no 'bright' image") == 1, said
    assert "calibrate on images of all 2 classes" in said
    quiet = runner.invoke(app, [*args, "--calib", str(brightness["good"]), "--out", str(tmp_path / "n.inspekt")])
    assert quiet.exit_code == 0 and "images that judge INT8 hold no" not in quiet.stderr  # both classes judge


def test_corrupt_calibration_image_is_skipped_and_reported_once(brightness, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(brightness["root"] / "val", data)
    (data / "dark" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    report = quantize_bundle(brightness["bundle"], tmp_path / "m.inspekt", calib=data)
    assert report.path.is_file() and report.n_images == 24 and report.n_calib == 24
    assert [s.path for s in report.skipped] == [str(data / "dark" / "broken.png")]
    assert "broken.png" in report.summary()


def test_refuses_other_tasks_and_int8_bundles(brightness, tmp_path):
    bundle = open_bundle(brightness["bundle"])
    copy_bundle(
        bundle,
        tmp_path / "anomaly",
        archive=False,
        card=bundle.card.model_copy(
            update={
                "task": "anomaly",
                "classes": ("good", "anomalous"),
                "anomaly": AnomalySpec(image_threshold=1.0, image_scale=1.0, pixel_threshold=1.0, pixel_scale=1.0),
            }
        ),
    )
    copy_bundle(bundle, tmp_path / "q8", archive=False, card=bundle.card.model_copy(update={"precision": "int8"}))
    with pytest.raises(ConfigError, match="classify, segment, detect bundles only"):
        quantize_bundle(tmp_path / "anomaly", calib=brightness["good"])
    with pytest.raises(ConfigError, match="already INT8"):
        quantize_bundle(tmp_path / "q8", calib=brightness["good"])
    for limits, said in (
        ({"max_drop": 1.5}, r"max_drop=1\.5 \(--max-drop on the command line\) must be a fraction in \[0, 1\]"),
        ({"min_agreement": 95}, r"min_agreement=95 \(--min-agreement on the command line\) must be a fraction"),
        ({"min_speedup": -1}, r"min_speedup=-1 \(--allow-slower on the command line\) must be >= 0"),
    ):
        with pytest.raises(ConfigError, match=said):
            quantize_bundle(brightness["bundle"], tmp_path / "x.inspekt", calib=brightness["good"], **limits)


def test_cli_export_int8_json_and_refusal(brightness, tmp_path, vnni_recipe):
    args = ["export", str(brightness["bundle"]), "--int8", "--json"]
    ok = runner.invoke(app, [*args, "--calib", str(brightness["good"]), "--out", str(tmp_path / "m.inspekt")])
    assert ok.exit_code == 0, ok.output
    written = json.loads(ok.stdout)
    assert written["path"] == str(tmp_path / "m.inspekt") and written["drop"] <= 0.01
    assert open_bundle(written["path"]).card.precision == "int8"
    refused = runner.invoke(app, [*args, "--calib", str(brightness["skewed"]), "--out", str(tmp_path / "r.inspekt")])
    assert refused.exit_code == 2
    figures = json.loads(refused.stdout)
    assert figures["path"] is None and figures["drop"] > 0.01 and figures["written"] is False
    assert "accuracy drops" in figures["refused"] and written["written"] is True and written["refused"] is None
    assert "--max-drop" in refused.stderr and "Traceback" not in refused.stderr
    assert not (tmp_path / "r.inspekt").exists()
    misplaced = runner.invoke(app, ["export", str(brightness["bundle"]), "--calib", str(brightness["good"])])
    assert misplaced.exit_code == 2 and "apply to --int8 only" in misplaced.stderr
    image = brightness["root"] / "val" / "dark" / "0.png"
    torch_run = runner.invoke(app, ["predict", written["path"], str(image), "--backend", "torch"])
    assert torch_run.exit_code == 0 and "the torch backend runs its fp32 weights" in " ".join(torch_run.stderr.split())
    assert "fp32 weights" not in runner.invoke(app, ["predict", written["path"], str(image)]).stderr
    percent = runner.invoke(app, [*args, "--min-agreement", "95"])  # a percentage where a share is asked
    said = " ".join(percent.output.split())
    assert percent.exit_code == 2 and "--min-agreement" in said and "less than or equal to 1" in said, said
    # exporting an INT8 bundle again (e.g. into a folder) copies it: from its fp32 weights the graph would be fp32
    # while the card kept its INT8 note and figures
    again = runner.invoke(app, ["export", written["path"], "--folder", "--out", str(tmp_path / "q8-folder")])
    assert again.exit_code == 0, again.output
    assert "model.onnx is INT8: copied unchanged" in " ".join(again.stdout.split())
    copied, original = open_bundle(tmp_path / "q8-folder"), open_bundle(written["path"])
    assert copied.path.is_dir() and copied.card == original.card and copied.read(ONNX) == original.read(ONNX)
    path, parity = export_bundle(original, tmp_path / "again.inspekt")  # the Python API does the same
    assert parity is None and open_bundle(path).read(ONNX) == original.read(ONNX)


@pytest.mark.slow
def test_cli_refusal_through_the_installed_command(brightness, tmp_path):
    """A refusal (here: the bundle is INT8 already, the same on every CPU) is one line and exit code 2."""
    bundle = open_bundle(brightness["bundle"])
    copy_bundle(bundle, tmp_path / "q8", archive=False, card=bundle.card.model_copy(update={"precision": "int8"}))
    exe = Path(sys.executable).with_name("inspekt")
    proc = subprocess.run(
        [str(exe), "export", str(tmp_path / "q8"), "--int8", "--calib", str(brightness["good"])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and "already INT8" in proc.stderr
    assert proc.stderr.count("\n") == 1 and not (tmp_path / "q8-int8.inspekt").exists()


def test_accuracy_check_decides_labels_like_the_predictor(brightness, tmp_path):
    """A card threshold of 0 makes the Predictor say "dark" for everything; the INT8 accuracy check
    must score those same labels (half right on the balanced evaluation images), not the argmax."""
    source = open_bundle(brightness["bundle"])
    always_dark = copy_bundle(
        source, tmp_path / "dark", archive=False, card=source.card.model_copy(update={"thresholds": {"dark": 0.0}})
    )
    images = list_images(brightness["root"] / "val")
    assert {p.label for p in Predictor.load(always_dark).predict(images)} == {"dark"}
    report = quantize_bundle(always_dark, tmp_path / "int8.inspekt", calib=brightness["good"])
    assert report.quality["accuracy"] == (0.5, 0.5)


def test_int8_slower_than_fp32_is_refused_unless_allowed(brightness, tmp_path):
    out = tmp_path / "slow.inspekt"
    slow = _timer({1: 0.65, 16: 1.2})
    with pytest.raises(SlowerInt8Error) as refused:
        quantize_bundle(brightness["bundle"], out, calib=brightness["good"], timer=slow)
    message, report = str(refused.value), refused.value.report
    assert "\n" not in message and "batch 1 0.65x, batch 16 1.20x" in message
    assert "fp32 bundle is the faster one" in message and "--allow-slower" in message
    assert report.path is None and report.speedup == {1: 0.65, 16: 1.2} and report.drop <= 0.01
    assert not out.exists()
    allowed = quantize_bundle(brightness["bundle"], out, calib=brightness["good"], timer=slow, min_speedup=0)
    card = open_bundle(allowed.path).card
    assert card.metrics["int8_speedup_b1"] == 0.65 and card.metrics["int8_speedup_b16"] == 1.2
    assert "batch 1 0.65x" in card.notes[-1] and "written anyway" in card.notes[-1]
    with pytest.raises(SlowerInt8Error) as short:  # faster, but not by as much as a caller asked
        quantize_bundle(
            brightness["bundle"],
            tmp_path / "fast.inspekt",
            calib=brightness["good"],
            timer=_timer({1: 2.0, 16: 2.0}),
            min_speedup=3,
        )
    assert "batch 1 2.00x, batch 16 2.00x" in str(short.value) and "below the 3x asked" in str(short.value)
    assert "faster one" not in str(short.value) and not (tmp_path / "fast.inspekt").exists()


def test_speed_is_measured_here_and_recorded_with_the_cpu_flags(brightness, tmp_path):
    report = quantize_bundle(
        brightness["bundle"],
        tmp_path / "m.inspekt",
        calib=brightness["good"],
        timer=quant_speed.measure_speedup,  # the real measurement
        min_speedup=0,  # its value depends on this CPU; only that it is measured and recorded is tested
    )
    assert set(report.speedup) == {1, 16} and all(r > 0 for r in report.speedup.values())
    fp32 = open_bundle(brightness["bundle"]).read(ONNX)
    assert report.cpu_flags == cpu_flags() and report.recipe == recipes_for(cpu_flags(), prepare(fp32))[0].describe()
    card = open_bundle(report.path).card
    assert card.metrics["int8_speedup_b1"] == round(report.speedup[1], 3)
    assert card.metrics["int8_speedup_b16"] == round(report.speedup[16], 3)
    assert quant_speed.describe_cpu(cpu_flags()) in card.notes[-1]
    # how it was accepted: on what, and within which limits (the card outlives the terminal)
    assert (
        f"calibrated on 24 images of {brightness['good']}, judged on 24 (accepted at most 1.00 points lost, "
        in (card.notes[-1])
        and "labels agreeing on at least 95%" in card.notes[-1]
    )
    assert "INT8 speed / fp32 speed" in report.summary()


def test_cpu_flags_choose_the_recipe(tmp_path, brightness):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni\n\nflags\t: avx\n")
    assert cpu_flags(cpuinfo) == ("avx", "avx2", "fma", "avx512f", "avx512_vnni")
    assert cpu_flags(tmp_path / "absent") == ()
    assert quant_speed.describe_cpu(("avx", "avx2", "fma")) == "avx avx2 fma, no VNNI"
    prepared = prepare(open_bundle(brightness["bundle"]).read(ONNX))
    assert [r.describe() for r in recipes_for(cpu_flags(cpuinfo), prepared)] == ["QDQ U8S8 per-channel"]
    (avx2,) = recipes_for(("avx", "avx2", "fma"), prepared)  # every conv narrow: no careful recipe to try
    assert avx2.describe() == "QDQ U8S8 per-channel, first conv fp32"
    batches = [np.random.default_rng(0).random((8, 1, 16, 16), dtype=np.float32)]
    graph = onnx.load_from_string(quantize_onnx(prepared, batches, avx2))
    ops = [node.op_type for node in graph.graph.node]
    assert ops.count("Conv") >= 2 and {"QuantizeLinear", "DequantizeLinear"} <= set(ops)
    first = next(node for node in graph.graph.node if node.op_type == "Conv")
    assert not any(name.endswith("_DequantizeLinear_Output") for name in first.input[:1])  # fed fp32, not int8


def test_cli_refuses_slower_int8_and_allow_slower_writes_it(brightness, tmp_path, monkeypatch):
    monkeypatch.setattr("inspekt.engine.quantize.measure_speedup", _timer({1: 0.7, 16: 0.8}))
    args = ["export", str(brightness["bundle"]), "--int8", "--calib", str(brightness["good"])]
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "r.inspekt"), "--json"])
    assert refused.exit_code == 2 and json.loads(refused.stdout)["speedup"] == {"1": 0.7, "16": 0.8}
    assert "the fp32 bundle is the faster one" in refused.stderr and not (tmp_path / "r.inspekt").exists()
    allowed = runner.invoke(app, [*args, "--out", str(tmp_path / "a.inspekt"), "--allow-slower"])
    assert allowed.exit_code == 0, allowed.output
    assert "batch 1 0.70x, batch 16 0.80x" in " ".join(allowed.stdout.split())  # the console wraps lines
    assert open_bundle(tmp_path / "a.inspekt").card.metrics["int8_speedup_b16"] == 0.8
    misplaced = runner.invoke(app, ["export", str(brightness["bundle"]), "--allow-slower"])
    assert misplaced.exit_code == 2 and "apply to --int8 only" in misplaced.stderr


def _fp32_convs(graph: bytes) -> list[str]:
    """The convolutions of a graph whose weights are plain floats (not dequantised 8-bit ones)."""
    model = onnx.load_from_string(graph)
    weights = {w.name for w in model.graph.initializer}
    return [node.name for node in model.graph.node if node.op_type == "Conv" and node.input[1] in weights]


def test_a_refused_fast_recipe_is_followed_by_the_careful_one(wide_brightness, tmp_path, vnni_recipe):
    fp32 = open_bundle(wide_brightness["bundle"]).read(ONNX)
    prepared = prepare(fp32)
    fast, careful = recipes_for(("avx2", "avx512_vnni"), prepared)
    assert careful.describe() == "QDQ U8S8 per-channel, narrow convs fp32"
    convs = [node.name for node in onnx.load_from_string(prepared).graph.node if node.op_type == "Conv"]
    assert fast.fp32_convs(onnx.load_from_string(prepared)) == []
    assert careful.fp32_convs(onnx.load_from_string(prepared)) == convs[:1]  # 1 input channel x 3x3: narrow
    batches = [np.random.default_rng(0).random((8, 1, 16, 16), dtype=np.float32)]
    assert _fp32_convs(quantize_onnx(prepared, batches, careful)) == convs[:1]
    assert _fp32_convs(quantize_onnx(prepared, batches, fast)) == []

    # every conv in 8 bits runs slower here, the careful graph faster: the careful one is written
    def timer(fp32_graph, int8_graph, images):
        return {1: 1.4, 16: 1.3} if _fp32_convs(int8_graph) else {1: 0.8, 16: 0.9}

    out = tmp_path / "m.inspekt"
    report = quantize_bundle(wide_brightness["bundle"], out, calib=wide_brightness["good"], timer=timer)
    assert report.recipe == careful.describe() and report.speedup == {1: 1.4, 16: 1.3}
    (tried,) = report.tried
    assert tried["recipe"] == fast.describe() and tried["speedup"] == {1: 0.8, 16: 0.9}
    assert tried["refused"] == ["it runs at batch 1 0.80x, batch 16 0.90x fp32's speed (at least 1x)"]
    line = "QDQ U8S8 per-channel, refused: it runs at batch 1 0.80x, batch 16 0.90x fp32's speed (at least 1x)"
    assert f"also tried: {line}" in report.summary()
    card = open_bundle(report.path).card
    assert careful.describe() in card.notes[-1] and line in card.notes[-1]
    assert _fp32_convs(open_bundle(report.path).read(ONNX)) == convs[:1]

    # both refused for speed alone: the fast one's refusal is raised (--allow-slower writes it and loses
    # nothing), naming the careful one; nothing is written
    with pytest.raises(SlowerInt8Error) as slow:
        quantize_bundle(
            wide_brightness["bundle"],
            tmp_path / "n.inspekt",
            calib=wide_brightness["good"],
            timer=_timer({1: 0.5, 16: 0.5}),
        )
    message = str(slow.value)
    assert "INT8 runs at batch 1 0.50x, batch 16 0.50x" in message and "--allow-slower" in message
    assert f"Also tried: {careful.describe()}, refused: it runs at batch 1 0.50x" in message
    assert slow.value.report.recipe == fast.describe() and not (tmp_path / "n.inspekt").exists()


def test_which_refusal_is_raised_when_every_recipe_is_refused():
    def report(recipe, quality, speed):
        return QuantReport(
            quality={"accuracy": (0.9, quality)},
            agreement=1.0,
            agreeing="labels",
            n_images=20,
            n_calib=20,
            max_drop=0.01,
            speedup={1: speed, 16: speed},
            recipe=recipe,
        )

    fast_slow, careful_lossy = report("fast", 0.9, 0.8), report("careful", 0.85, 1.5)
    picked = pick_refusal([fast_slow, careful_lossy])  # --allow-slower writes the fast one, losing nothing
    assert picked.recipe == "fast" and [t["recipe"] for t in picked.tried] == ["careful"]
    assert picked.tried[0]["refused"] == ["accuracy drops 5.00 points (0.9000 -> 0.8500; limit 1.00)"]
    fast_lossy, careful_slow = report("fast", 0.8, 2.0), report("careful", 0.9, 0.9)
    assert pick_refusal([fast_lossy, careful_slow]).recipe == "careful"  # --allow-slower writes the careful one
    both_lossy = pick_refusal([fast_lossy, report("careful", 0.85, 0.5)])  # the smaller loss to accept
    assert both_lossy.recipe == "careful" and both_lossy.tried[0]["recipe"] == "fast"
    assert both_lossy.reasons()[-1] == "it runs at batch 1 0.50x, batch 16 0.50x fp32's speed (at least 1x)"
    with pytest.raises(AccuracyDropError, match=r"On 20 images one image is 5\.00 points of a per-image share"):
        refuse_if_failed(report("fast", 0.85, 2.0), Path("m.inspekt"))  # 20 images: one flip is 5 points
    with pytest.raises(AccuracyDropError) as fine_grained:
        refuse_if_failed(replace(report("fast", 0.85, 2.0), n_images=400), Path("m.inspekt"))
    assert "one image is" not in str(fine_grained.value)  # one image of 400 is 0.25 points, below the limit
    fast_less = pick_refusal([report("fast", 0.88, 2.0), report("careful", 0.86, 1.5)])  # the careful one lost more
    assert fast_less.recipe == "fast" and "--max-drop 0.02 " in acceptance(fast_less)
    close = replace(report("fast", 0.9, 2.0), agreement=0.9896, min_agreement=0.99)
    assert close.failures() == ["labels agree with fp32 on 98.96% only (at least 99%)"]  # not "99.0% only"


def test_cli_json_names_every_recipe_tried(wide_brightness, tmp_path, vnni_recipe):
    """Dark-only calibration clips bright inputs whichever convs stay fp32: both recipes are refused, with the
    same loss, so the first one's refusal is raised, and the JSON keeps the careful one's figures beside it."""
    args = ["export", str(wide_brightness["bundle"]), "--int8", "--calib", str(wide_brightness["skewed"]), "--json"]
    refused = runner.invoke(app, [*args, "--out", str(tmp_path / "r.inspekt")])
    assert refused.exit_code == 2 and not (tmp_path / "r.inspekt").exists()
    figures = json.loads(refused.stdout)
    assert figures["written"] is False and figures["recipe"] == "QDQ U8S8 per-channel"
    (careful,) = figures["tried"]
    assert careful["recipe"] == "QDQ U8S8 per-channel, narrow convs fp32"
    assert careful["quality"]["accuracy"][1] < 0.99 and careful["refused"][0].startswith("accuracy drops")
    error = " ".join(refused.stderr.split())
    assert "was refused (see below); trying QDQ U8S8 per-channel, narrow convs fp32" in error
    assert "Also tried: QDQ U8S8 per-channel, narrow convs fp32, refused: accuracy drops" in error
    assert "--max-drop" in error


def test_images_the_model_trained_on_never_judge_int8_when_others_can(trained, synth_classes, tmp_path, caplog):
    """A fresh split of the training data put images the model trained on in its test split: INT8 was judged on
    them (the bundle's record says which they are), and nothing said so."""
    source = open_bundle(trained.bundle)
    trained_on = seen_by(source)["train"]
    files = list_images(synth_classes)
    old = [f for f in files if image_key(f) in trained_on]
    new = [f for f in files if image_key(f) not in trained_on]
    assert len(old) == 64 and len(new) == 16

    def split_csv(name, rows):
        return _write_csv(tmp_path / name, [{"path": str(f), "label": f.parent.name, "split": s} for f, s in rows])

    # its test split holds 20 trained-on images and 10 new ones: only the 10 judge
    mixed = split_csv("mixed.csv", [(f, "test") for f in old[:20] + new[:10]] + [(f, "train") for f in old[20:]])
    report = quantize_bundle(source, tmp_path / "a.inspekt", calib=mixed, max_drop=1, min_agreement=0)
    assert report.n_images == 10
    # a test split of trained-on images only: the new images in its other splits judge instead
    stale = split_csv("stale.csv", [(f, "test") for f in old[:20]] + [(f, "train") for f in old[20:] + new])
    assert quantize_bundle(source, tmp_path / "b.inspekt", calib=stale, max_drop=1, min_agreement=0).n_images == 16
    # nothing new to the model: judged on what it trained on, and said so
    only_old = split_csv("old.csv", [(f, "test") for f in old[:20]] + [(f, "train") for f in old[20:]])
    with caplog.at_level("WARNING", logger="inspekt"):
        report = quantize_bundle(source, tmp_path / "c.inspekt", calib=only_old, max_drop=1, min_agreement=0)
    assert report.n_images == 20
    assert "the model trained on 64 of the 64 images" in caplog.text and "flatters both graphs" in caplog.text


def test_a_model_that_failed_its_sanity_check_is_named_before_int8(brightness, tmp_path, caplog):
    """A detector that found no box passed INT8 with "boxes agree on 100%": both graphs found nothing. INT8 can
    only agree with a failed model, so the export says first what predict and eval say of it."""
    source = open_bundle(brightness["bundle"])
    failed = copy_bundle(
        source,
        tmp_path / "failed",
        archive=False,
        card=source.card.model_copy(update={"sanity": Sanity(ok=False, why="predicts 'dark' for every image")}),
    )
    with caplog.at_level("WARNING", logger="inspekt"):
        report = quantize_bundle(failed, tmp_path / "q.inspekt", calib=brightness["good"])
    assert (
        f"{failed} failed its training's sanity check" in caplog.text
        and "predicts 'dark' for every image" in caplog.text
    )
    assert open_bundle(report.path).card.sanity.ok is False  # the INT8 bundle keeps the verdict
