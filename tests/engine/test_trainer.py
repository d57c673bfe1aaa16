"""The classification training loop: losses, sampler, recipes, checkpoints, exact resume, Ctrl-C,
run folder contents, backbones and starting weights."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from inspekt.augment import build_augmenter
from inspekt.bundle import open_bundle
from inspekt.config import TrainConfig
from inspekt.engine.predictor import Predictor
from inspekt.engine.trainer import LAST, resume, train
from inspekt.errors import ConfigError, DatasetError, RunUnfinished
from inspekt.io import load_image
from inspekt.tasks.classify.losses import make_loss
from inspekt.tasks.shared import class_weights
from inspekt.tasks.supervised import epoch_order

METRIC_COLUMNS = ("train_loss", "val_loss", "val_accuracy", "val_macro_f1")


def config(data: Path, out: Path, **changes) -> TrainConfig:
    base = dict(
        task="classify",
        data=str(data),
        epochs=3,
        imgsz=32,
        batch=16,
        model_params={"width": 8},
        out=str(out),
        threads=1,
    )
    return TrainConfig(**(base | changes))


def metric_rows(history: list[dict]) -> list[tuple]:
    return [tuple(row[k] for k in ("epoch", *METRIC_COLUMNS)) for row in history]


# ---------------------------------------------------------------- losses and sampling


def test_losses_agree_where_they_should():
    torch.manual_seed(0)
    logits, targets = torch.randn(12, 3), torch.randint(0, 3, (12,))
    ce = make_loss("ce")(logits, targets)
    assert torch.allclose(make_loss("focal", gamma=0.0)(logits, targets), ce, atol=1e-6)
    assert make_loss("focal", gamma=2.0)(logits, targets) < ce  # easy examples are down-weighted
    onehot = torch.nn.functional.one_hot(targets, 3).float()
    manual_bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, onehot, reduction="sum") / 12
    assert torch.allclose(make_loss("bce")(logits, targets), manual_bce, atol=1e-6)


@pytest.mark.parametrize("name", ["ce", "bce", "focal"])
def test_class_weights_shift_each_loss_towards_the_weighted_class(name):
    targets = torch.tensor([0, 0, 0, 1])
    wrong_for_1 = torch.tensor([[2.0, -2.0]] * 4)
    assert make_loss(name, np.array([1.0, 3.0], dtype=np.float32))(wrong_for_1, targets) > make_loss(name)(
        wrong_for_1, targets
    )


def test_auto_class_weights_are_inverse_frequency():
    labels = np.array([0] * 6 + [1] * 2 + [2] * 4)
    weights = class_weights(np.bincount(labels, minlength=3), ("a", "b", "c"), "auto")
    assert weights[1] > weights[2] > weights[0]
    assert np.isclose(weights[0] * 6, weights[1] * 2) and np.isclose(weights.mean(), 1.0)
    assert class_weights(np.bincount(labels, minlength=3), ("a", "b", "c"), "none") is None
    assert class_weights(np.bincount(labels, minlength=3), ("a", "b", "c"), {"b": 4}).tolist() == [1.0, 4.0, 1.0]
    with pytest.raises(ConfigError, match=r"unknown class\(es\) \['z'\]"):
        class_weights(np.bincount(labels, minlength=3), ("a", "b", "c"), {"z": 2})


def test_balanced_sampler_oversamples_the_rare_class():
    labels = np.array([0] * 90 + [1] * 10)
    draws = np.concatenate([epoch_order(labels, np.random.default_rng(i), balanced=True) for i in range(20)])
    share = np.mean(labels[draws] == 1)
    assert 0.4 < share < 0.6
    plain = epoch_order(labels, np.random.default_rng(0), balanced=False)
    assert sorted(plain.tolist()) == list(range(100))


# ---------------------------------------------------------------- augmentation


@pytest.mark.parametrize("recipe", ["none", "light", "default", "strong"])
def test_recipes_keep_shape_and_are_reproducible(recipe):
    image = np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)
    augmenter = build_augmenter(recipe, (32, 32), flips="both", seed=1)
    runs = []
    for _ in range(2):
        augmenter.reseed(7)
        runs.append(np.stack([augmenter(image) for _ in range(5)]))
    assert runs[0].shape == (5, 32, 32) and np.array_equal(runs[0], runs[1])
    if recipe != "none":
        assert any(not np.array_equal(out, image) for out in runs[0])


def test_augmentation_from_a_yaml_file(tmp_path):
    import albumentations as A

    path = tmp_path / "aug.yaml"
    A.save(A.Compose([A.VerticalFlip(p=1.0)]), str(path), data_format="yaml")
    image = np.arange(16, dtype=np.uint8).reshape(4, 4)
    assert np.array_equal(build_augmenter(str(path), (4, 4))(image), image[::-1])
    (tmp_path / "bad.yaml").write_text("just: text\n")
    with pytest.raises(ConfigError, match="bad.yaml: not an albumentations transform file"):
        build_augmenter(str(tmp_path / "bad.yaml"), (4, 4))
    with pytest.raises(ConfigError, match='Did you mean "strong"'):
        build_augmenter("stronk", (4, 4))


# ---------------------------------------------------------------- the loop


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss, sampler, weights", [("ce", "shuffle", "none"), ("bce", "balanced", "none"), ("focal", "shuffle", "auto")]
)
def test_every_loss_and_sampler_trains_a_usable_model(synth_classes, tmp_path, loss, sampler, weights):
    result = train(config(synth_classes, tmp_path, loss=loss, sampler=sampler, class_weights=weights, epochs=2))
    assert all(np.isfinite(row["train_loss"]) for row in result.history)
    prediction = Predictor.load(result.bundle).predict(str(next(synth_classes.glob("ok/*.png"))))[0]
    assert np.isclose(sum(prediction.scores.values()), 1.0)


def test_run_folder_holds_everything(trained):
    run = trained.run_dir
    for name in (
        "bundle/card.json",
        "bundle/model.onnx",
        "config.yaml",
        "results.csv",
        "curves.png",
        "confusion.png",
        "versions.json",
        "checkpoints/last.pt",
        "checkpoints/best.safetensors",
    ):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "results.csv").open()))
    assert len(rows) == len(trained.history) and {"epoch", "lr", "seconds", *METRIC_COLUMNS} <= set(rows[0])
    assert load_image(run / "curves.png").shape[0] > 100
    card = open_bundle(trained.bundle).card
    assert card.metrics["val_macro_f1"] == trained.metrics["val_macro_f1"]
    assert 1 <= card.metrics["best_epoch"] <= len(trained.history)


@pytest.mark.slow
def test_same_seed_same_history_whether_cached_or_decoded_each_epoch(synth_classes, tmp_path):
    first = train(config(synth_classes, tmp_path, epochs=2, name="a"))
    second = train(config(synth_classes, tmp_path, epochs=2, name="b"))
    assert metric_rows(first.history) == metric_rows(second.history)
    uncached = train(config(synth_classes, tmp_path, epochs=2, name="c", cache_mb=0))
    assert metric_rows(uncached.history) == metric_rows(first.history)
    assert any("did not fit in cache_mb=0" in note for note in uncached.notes)


@pytest.mark.slow
def test_one_cycle_schedule_rises_then_falls(synth_classes, tmp_path):
    result = train(config(synth_classes, tmp_path, epochs=4, scheduler="onecycle", lr=0.01))
    rates = [row["lr"] for row in result.history]
    assert rates[0] < max(rates) <= 0.01 and rates[-1] < max(rates)


@pytest.mark.slow
def test_ctrl_c_keeps_the_best_model_and_resume_finishes_exactly(synth_classes, tmp_path):
    reference = train(config(synth_classes, tmp_path, epochs=4, name="reference"))

    def interrupt_after_two(row):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    stopped = train(config(synth_classes, tmp_path, epochs=4, name="stopped"), on_epoch=interrupt_after_two)
    assert stopped.interrupted and len(stopped.history) == 2 and Path(stopped.bundle).is_dir()
    finished = resume(stopped.run_dir)
    assert not finished.interrupted
    assert metric_rows(finished.history) == metric_rows(reference.history)
    with pytest.raises(ConfigError, match="already finished"):
        resume(stopped.run_dir)


@pytest.mark.slow
def test_ctrl_c_while_the_bundle_is_written_keeps_weights_and_resume_writes_it(synth_classes, tmp_path, monkeypatch):
    import inspekt.engine.trainer as trainer

    reference = train(config(synth_classes, tmp_path, epochs=2, name="reference"))
    write_reference = trainer.write_reference

    def ctrl_c(*args, **kwargs):  # the user presses Ctrl-C after the last epoch, while the bundle is written
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "write_reference", ctrl_c)
    run_dir = tmp_path / "classify" / "late"
    with pytest.raises(RunUnfinished, match=f"continue it with inspekt train classify --resume {run_dir}$"):
        train(config(synth_classes, tmp_path, epochs=2, name="late"))
    assert (run_dir / LAST).is_file() and not (run_dir / "bundle" / "reference.json").exists()
    monkeypatch.setattr(trainer, "write_reference", write_reference)
    finished = resume(run_dir)  # no epoch is trained again: the bundle is written from the kept weights
    assert metric_rows(finished.history) == metric_rows(reference.history)
    assert (run_dir / "bundle" / "reference.json").is_file()
    assert open_bundle(finished.bundle).read("weights.safetensors") == open_bundle(reference.bundle).read(
        "weights.safetensors"
    )
    with pytest.raises(ConfigError, match="already finished"):
        resume(run_dir)


@pytest.mark.slow
def test_a_checkpoint_written_before_the_one_loop_resumes_exactly(synth_classes, tmp_path):
    """last.pt files of inspekt <= 5736bbe kept the optimiser state under "loop"; they still resume."""
    reference = train(config(synth_classes, tmp_path, epochs=3, name="reference"))

    def interrupt_after_one(row):
        if row["epoch"] == 1:
            raise KeyboardInterrupt

    stopped = train(config(synth_classes, tmp_path, epochs=3, name="old"), on_epoch=interrupt_after_one)
    state = torch.load(stopped.run_dir / LAST, weights_only=True)
    nested = ("model", "optimizer", "scheduler", "scaler")
    old = {k: v for k, v in state.items() if k not in nested} | {"loop": {k: state[k] for k in nested}}
    torch.save(old, stopped.run_dir / LAST)
    finished = resume(stopped.run_dir)
    assert metric_rows(finished.history) == metric_rows(reference.history)


@pytest.mark.slow
def test_resume_after_kill_9_is_exact(synth_classes, tmp_path):
    """A real process killed with SIGKILL mid-run, then resumed: the same epochs as an uninterrupted run."""
    reference = train(config(synth_classes, tmp_path, epochs=5, name="reference"))
    exe = Path(sys.executable).with_name("inspekt")
    args = [
        str(exe),
        "train",
        "classify",
        "--data",
        str(synth_classes),
        "--epochs",
        "5",
        "--imgsz",
        "32",
        "--batch",
        "16",
        "--out",
        str(tmp_path),
        "--name",
        "killed",
        "model_params.width=8",
        "threads=1",
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    results = tmp_path / "classify" / "killed" / "results.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if results.is_file() and len(results.read_text().splitlines()) >= 3:  # header + 2 epochs
            break
        time.sleep(0.05)
    if proc.poll() is not None:
        pytest.fail("the training process ended before it could be killed")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "classify" / "killed" / "bundle").exists()
    finished = resume(tmp_path / "classify" / "killed")
    assert metric_rows(finished.history) == metric_rows(reference.history)


def test_resume_refuses_what_it_cannot_continue(tmp_path):
    with pytest.raises(ConfigError, match="not a run folder"):
        resume(tmp_path)
    (tmp_path / "config.yaml").write_text("task: classify\ndata: x\n")
    with pytest.raises(ConfigError, match=f"no {LAST} to resume from"):
        resume(tmp_path)


@pytest.mark.slow
def test_a_corrupt_image_is_skipped_and_reported(synth_classes, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synth_classes, data)
    (data / "ok" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    result = train(config(data, tmp_path / "runs", epochs=1))
    assert [Path(s.path).name for s in result.skipped.skipped] == ["broken.png"]
    assert "broken.png" in (result.run_dir / "skipped.txt").read_text()


@pytest.mark.parametrize(
    "task, columns, cells",
    [
        ("classify", "path,label", ""),
        ("segment", "path,label,mask", ",m.png"),
        ("detect", "path,label,boxes", ',"[[""a"", 1, 1, 5, 5]]"'),
    ],
)
def test_a_split_whose_files_are_all_missing_says_so_not_to_add_images(task, columns, cells, tmp_path):
    table = tmp_path / "labels.csv"
    rows = "".join(f"{c}{i}.png,{c}{cells}\n" for c in "ab" for i in range(3))
    table.write_text(f"{columns}\n{rows}", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"none of the 4 images of the training split could be used.*; e\.g\. "):
        train(config(table, tmp_path / "runs", task=task, epochs=1, imgsz=32))


@pytest.mark.slow
def test_preprocessing_choices_are_recorded_in_the_card(synth_classes, tmp_path):
    result = train(config(synth_classes, tmp_path, epochs=1, channels=3, clahe=2.0, resize="letterbox"))
    spec = open_bundle(result.bundle).card.input
    assert (spec.channels, spec.clahe, spec.resize, spec.size) == (3, 2.0, "letterbox", (32, 32))


@pytest.mark.slow
def test_binary_data_monitors_roc_auc(synth_classes, tmp_path):
    import shutil

    data = tmp_path / "binary"
    for name in ("ok", "scratch"):
        shutil.copytree(synth_classes / name, data / name)
    result = train(config(data, tmp_path / "runs", epochs=2))
    assert "val_roc_auc" in result.metrics and open_bundle(result.bundle).card.classes == ("ok", "scratch")


# ---------------------------------------------------------------- backbones and starting weights


@pytest.mark.slow
def test_a_timm_backbone_trains_and_exports_with_parity(synth_classes, tmp_path):
    result = train(config(synth_classes, tmp_path, model="mobilenetv3_small_100", model_params={}, epochs=1))
    assert result.parity.ok
    card = open_bundle(result.bundle).card
    assert card.architecture == "mobilenetv3_small_100" and card.params["in_chans"] in (1, 3)


def test_any_timm_architecture_by_prefix_and_unknown_names(synth_classes, tmp_path):
    from inspekt.models import create_model

    network = create_model("timm/resnet10t", num_classes=3, in_chans=1)
    assert network.eval()(torch.zeros(1, 1, 32, 32)).shape == (1, 3)
    with pytest.raises(ConfigError, match="timm has no architecture 'resnet19'"):
        create_model("timm/resnet19", num_classes=3)


@pytest.mark.slow
def test_pretrained_file_loads_matching_tensors(trained, synth_classes, tmp_path):
    from safetensors.torch import save_file

    from inspekt.models.runtime import load_network

    weights = tmp_path / "start.safetensors"
    save_file({k: v.contiguous() for k, v in load_network(open_bundle(trained.bundle)).state_dict().items()}, weights)
    result = train(config(synth_classes, tmp_path / "runs", epochs=1, pretrained=str(weights)))
    assert any(note.startswith("loaded ") for note in result.notes)
    with pytest.raises(ConfigError, match="none of its 1 tensors fit"):
        save_file({"nothing.weight": torch.zeros(2)}, tmp_path / "other.safetensors")
        train(config(synth_classes, tmp_path / "runs", epochs=1, pretrained=str(tmp_path / "other.safetensors")))
    with pytest.raises(ConfigError, match="no such file"):
        train(config(synth_classes, tmp_path / "runs", pretrained=str(tmp_path / "missing.safetensors")))


def test_pretrained_rgb_stem_is_adapted_to_grey_input():
    from inspekt.models import create_model
    from inspekt.models.pretrained import load_pretrained

    rgb = create_model("resnet18", num_classes=5, in_chans=3)
    grey = create_model("resnet18", num_classes=2, in_chans=1)
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"rgb-{os.getpid()}.pth"
    torch.save(rgb.state_dict(), path)
    try:
        report = load_pretrained(grey, "resnet18", str(path))
    finally:
        path.unlink()
    assert report.adapted == ("conv1.weight",) and set(report.skipped) == {"fc.weight", "fc.bias"}
    assert torch.allclose(grey.conv1.weight, rgb.conv1.weight.sum(1, keepdim=True))


def test_published_weights_offline_fail_fast_with_advice(synth_classes, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match="pass --pretrained resnet18.safetensors"):
        train(config(synth_classes, tmp_path, model="resnet18", model_params={}, pretrained="timm"))
    with pytest.raises(ConfigError, match="not a timm architecture"):
        train(config(synth_classes, tmp_path, pretrained="timm"))
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there: refused at once
    with pytest.raises(ConfigError, match="127.0.0.1 is not reachable.*pass --pretrained resnet18.safetensors"):
        train(config(synth_classes, tmp_path, model="resnet18", model_params={}, pretrained="timm"))


def test_tiny_cnn_strided_stem_halves_the_first_feature_map():
    from inspekt.models import create_model

    plain = create_model("tiny_cnn", num_classes=2, in_chans=1, width=4)
    strided = create_model("tiny_cnn", num_classes=2, in_chans=1, width=4, stem_stride=2)
    x = torch.zeros(1, 1, 64, 64)
    assert plain.features[0](x).shape[-1] == 32 and strided.features[0](x).shape[-1] == 16
    assert strided.eval()(x).shape == (1, 2)
    with pytest.raises(ConfigError, match="stem_stride=3 is out of range"):
        create_model("tiny_cnn", num_classes=2, stem_stride=3)


def test_tiny_cnn_pooling_choices_export_with_parity():
    from inspekt.card import InputSpec, ModelCard
    from inspekt.models import create_model
    from inspekt.models.runtime import check_parity, export_onnx

    card = ModelCard(
        task="classify",
        architecture="tiny_cnn",
        classes=("a", "b"),
        input=InputSpec(size=(32, 32), channels=1, mean=(0.5,), std=(0.25,)),
    )
    for pool, dims in (("avg", 32), ("max", 32), ("avgmax", 64)):
        network = create_model("tiny_cnn", num_classes=2, in_chans=1, width=4, pool=pool).eval()
        assert network.head[-1].in_features == dims
        assert check_parity(network, export_onnx(network, card), card).ok
    with pytest.raises(ConfigError, match="pool='sum' is out of range"):
        create_model("tiny_cnn", num_classes=2, pool="sum")
