"""The whole path: train a tiny model -> bundle -> load -> predict through ONNX Runtime and torch."""

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from inspekt.bundle import CARD, ONNX, WEIGHTS, open_bundle
from inspekt.engine.predictor import Predictor
from inspekt.errors import BundleError, ConfigError
from inspekt.io import list_images, load_image
from inspekt.models.runtime import check_parity, export_onnx, save_bundle
from inspekt.results import BatchReport


def test_training_writes_a_complete_bundle(trained):
    bundle = open_bundle(trained.bundle)
    assert {CARD, WEIGHTS, ONNX} <= {p.name for p in trained.bundle.iterdir()}
    card = bundle.card
    assert card.task == "classify" and card.classes == ("lop", "ok", "pore", "scratch")
    assert card.input.size == (32, 32) and len(card.input.mean) == card.input.channels
    assert card.data.fingerprint and card.versions["torch"].startswith("2.")
    assert trained.parity.max_abs_diff <= 1e-4
    assert (trained.run_dir / "config.yaml").is_file() and (trained.run_dir / "results.csv").is_file()


def test_onnx_and_torch_predict_the_same(trained, synth_classes):
    files = list_images(synth_classes)[:24]
    onnx = Predictor.load(trained.bundle, backend="onnx").predict(files)
    eager = Predictor.load(trained.bundle, backend="torch").predict(files)
    assert [p.label for p in onnx] == [p.label for p in eager]
    diffs = [abs(a.scores[c] - b.scores[c]) for a, b in zip(onnx, eager) for c in a.scores]
    assert max(diffs) < 1e-5
    assert all(abs(sum(p.scores.values()) - 1) < 1e-5 for p in onnx)


def test_paths_bytes_and_arrays_give_identical_predictions(trained, synth_classes):
    path = list_images(synth_classes)[0]
    predictor = Predictor.load(trained.bundle)
    by_path, by_bytes = predictor.predict(path)[0], predictor.predict(path.read_bytes())[0]
    by_array = predictor.predict(load_image(path, mode="keep"))[0]
    assert by_path.scores == by_bytes.scores == by_array.scores
    assert by_path.source == str(path)


def test_archive_bundle_predicts_like_the_folder(trained, synth_classes, tmp_path):
    from inspekt.models.runtime import load_network

    folder = open_bundle(trained.bundle)
    archive, _ = save_bundle(load_network(folder), folder.card, tmp_path / "model", archive=True)
    assert archive.name == "model.inspekt" and zipfile.is_zipfile(archive)
    files = list_images(synth_classes)[:8]
    a = Predictor.load(archive).predict(files)
    b = Predictor.load(trained.bundle).predict(files)
    assert [p.label for p in a] == [p.label for p in b]
    assert max(abs(x.scores[c] - y.scores[c]) for x, y in zip(a, b) for c in x.scores) < 1e-6


def test_run_folder_resolves_to_its_bundle(trained):
    assert open_bundle(trained.run_dir).path == trained.bundle


def test_bad_files_are_skipped_and_reported(trained, synth_classes, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    files = [*list_images(synth_classes)[:3], broken, tmp_path / "missing.png"]
    report = BatchReport()
    results = Predictor.load(trained.bundle).predict(files, report=report)
    assert len(results) == 3 and report.loaded == 3
    assert [s.path for s in report.skipped] == [str(broken), str(tmp_path / "missing.png")]
    assert "not found" in report.skipped[1].reason
    with pytest.warns(UserWarning, match=r"loaded 3 images, skipped 2:\n  .*broken.png: .*\n  .*missing.png: "):
        assert len(Predictor.load(trained.bundle).predict(files)) == 3  # no report kept: a warning, not silence


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".ckpt", ".pkl"])
def test_pickles_are_refused(tmp_path, suffix):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"whatever")
    with pytest.raises(BundleError, match="pickle.*never loads"):
        open_bundle(path)


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="no such bundle"):
        open_bundle(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BundleError, match="no card.json"):
        open_bundle(tmp_path / "empty")
    (tmp_path / "x.inspekt").write_text("not a zip")
    with pytest.raises(BundleError, match="not a readable zip"):
        open_bundle(tmp_path / "x.inspekt")


def test_tampered_card_is_refused(trained, tmp_path):
    import shutil

    copy = shutil.copytree(trained.bundle, tmp_path / "b")
    raw = json.loads((copy / CARD).read_text()) | {"task": "count"}
    (copy / CARD).write_text(json.dumps(raw))
    with pytest.raises(BundleError, match=r"card.json: unknown task 'count' \(known: classify"):
        Predictor.load(copy)


class _NoisyNet(torch.nn.Module):
    """Adds fresh noise at every call: torch and ONNX Runtime can never agree."""

    def forward(self, x):
        return x.mean(dim=(2, 3)) + torch.rand(x.shape[0], 1)


def test_parity_failure_refuses_to_write(trained, tmp_path):
    card = open_bundle(trained.bundle).card
    out = tmp_path / "refused"
    with pytest.raises(BundleError, match="ONNX and torch outputs differ"):
        save_bundle(_NoisyNet(), card, out)
    assert not out.exists()


def test_parity_report_on_real_samples(trained):
    from inspekt.models.runtime import load_network

    bundle = open_bundle(trained.bundle)
    network = load_network(bundle)
    samples = np.random.default_rng(1).standard_normal((3, bundle.card.input.channels, 32, 32)).astype(np.float32)
    report = check_parity(network, export_onnx(network, bundle.card), bundle.card, samples)
    assert report.ok and report.n_inputs == 7


def test_unknown_backend(trained):
    with pytest.raises(ConfigError, match="unknown backend 'onxx'.*Did you mean \"onnx\""):
        Predictor.load(trained.bundle, backend="onxx")


def test_export_never_replaces_what_is_not_a_bundle(trained, tmp_path):
    from inspekt.models.runtime import load_network

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "data.png").write_bytes(b"precious")
    bundle = open_bundle(trained.bundle)
    with pytest.raises(BundleError, match="exists and is not a model bundle"):
        save_bundle(load_network(bundle), bundle.card, victim, overwrite=True)
    assert (victim / "data.png").read_bytes() == b"precious"
    with pytest.raises(BundleError, match="already exists.*--overwrite"):
        save_bundle(load_network(bundle), bundle.card, trained.bundle)


def _edited_copy(trained, tmp_path, **changes):
    import shutil

    copy = shutil.copytree(trained.bundle, tmp_path / "edited")
    raw = json.loads((copy / CARD).read_text())
    for key, value in changes.items():
        node = raw
        *parents, leaf = key.split(".")
        for part in parents:
            node = node[part]
        node[leaf] = value
    (copy / CARD).write_text(json.dumps(raw))
    return copy


def test_card_classes_must_match_the_model(trained, tmp_path):
    copy = _edited_copy(trained, tmp_path, classes=["a", "b", "c"])
    with pytest.raises(BundleError, match="params.num_classes is 4 but the card declares 3"):
        open_bundle(copy)


def test_card_input_size_must_match_the_graph(trained, tmp_path):
    copy = _edited_copy(trained, tmp_path, **{"input.size": [64, 64]})
    with pytest.raises(BundleError, match=r"declares input \[3, 64, 64\].*model.onnx takes \[3, 32, 32\]"):
        Predictor.load(copy)


def test_batch_size_must_be_positive(trained):
    with pytest.raises(ConfigError, match="batch size 0 must be 1 or more"):
        Predictor.load(trained.bundle, batch_size=0)


def test_copy_bundle_is_byte_identical_and_refuses_to_clobber(trained, tmp_path):
    from inspekt.bundle import copy_bundle

    source = open_bundle(trained.bundle)
    copied = open_bundle(copy_bundle(source, tmp_path / "copy"))
    assert copied.path.name == "copy.inspekt"
    assert all(copied.read(n) == source.read(n) for n in (CARD, WEIGHTS, ONNX))
    with pytest.raises(BundleError, match="already exists"):
        copy_bundle(source, tmp_path / "copy.inspekt")


def test_a_graph_or_weights_from_another_run_is_refused(trained, tmp_path):
    """The card records the sha256 of model.onnx and weights.safetensors: a file swapped in from another
    run (same shapes, other numbers) is refused by name instead of predicting something else."""
    import shutil

    card = json.loads((Path(trained.bundle) / CARD).read_text())
    assert set(card["digests"]) == {ONNX, WEIGHTS} and card["schema"] == "inspekt.card/v2"
    for member, backend in ((ONNX, "onnx"), (WEIGHTS, "torch")):
        copy = shutil.copytree(trained.bundle, tmp_path / member)
        data = bytearray((copy / member).read_bytes())
        data[-1] ^= 1  # one flipped bit: another file of the same size
        (copy / member).write_bytes(bytes(data))
        with pytest.raises(BundleError, match=rf"{member} is not the file this card was written with"):
            Predictor.load(copy, backend=backend)
    done = subprocess.run(  # the model is opened before any image is read
        [Path(sys.executable).with_name("inspekt"), "predict", str(tmp_path / ONNX), str(tmp_path)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "model.onnx is not the file this card was written with" in done.stderr
    assert "Traceback" not in done.stderr
