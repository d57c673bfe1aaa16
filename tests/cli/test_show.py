"""``inspekt show BUNDLE``: the card in words and as JSON, for a classifier and a detector."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from inspekt.bundle import MEMBERS, open_bundle
from inspekt.cli import app

runner = CliRunner()


def test_show_prints_what_a_classifier_is(trained):
    bundle = open_bundle(trained.bundle)
    card = bundle.card
    said = runner.invoke(app, ["show", str(trained.bundle)])
    assert said.exit_code == 0, said.output
    text = " ".join(said.stdout.split())
    assert f"task classify ({card.architecture}, fp32)" in text and f"classes {', '.join(card.classes)}" in text
    height, width = card.input.size
    colour = "grey" if card.input.channels == 1 else "RGB"
    assert f"input {colour}, {width} x {height} px (resize {card.input.resize})" in text
    assert f"validation (training) val_accuracy {card.metrics['val_accuracy']:.4g}" in text
    trained_on = f"{card.data.n_samples} training images, fingerprint {card.data.fingerprint}"
    assert f"data {card.data.source} ({trained_on})" in text
    assert ("sanity passed" if card.sanity.ok else f"sanity FAILED: {card.sanity.why}") in text
    assert "training images profiled (reference.json)" in text
    assert f"model.onnx {len(bundle.read('model.onnx')) / 1e3:.1f} kB" in text  # a tiny model


def test_show_json_is_the_whole_card_and_the_member_sizes(detect_trained):
    said = runner.invoke(app, ["show", str(detect_trained.bundle), "--json"])
    assert said.exit_code == 0, said.output
    facts = json.loads(said.stdout)
    bundle = open_bundle(detect_trained.bundle)
    assert facts["card"] == json.loads(bundle.card.model_dump_json(by_alias=True))
    assert facts["files"] == {name: len(bundle.read(name)) for name in MEMBERS if bundle.has(name)}
    words = " ".join(runner.invoke(app, ["show", str(detect_trained.bundle)]).stdout.split())
    assert f"score threshold {bundle.card.postprocess.threshold:.4g}" in words  # as the workbench names it


def test_show_refuses_what_is_not_a_bundle(tmp_path):
    said = runner.invoke(app, ["show", str(tmp_path / "nothing.inspekt")])
    assert said.exit_code == 2 and "no such bundle" in said.stderr
    (tmp_path / "notes.txt").write_text("hello")
    said = runner.invoke(app, ["show", str(tmp_path / "notes.txt")])
    assert said.exit_code == 2 and "notes.txt" in said.stderr


def test_show_refuses_a_bundle_without_its_graph(trained, tmp_path):
    """A folder bundle whose model.onnx was deleted showed fine (and predict then failed)."""
    import shutil

    folder = tmp_path / "bundle"
    shutil.copytree(trained.bundle, folder)
    (folder / "model.onnx").unlink()
    said = runner.invoke(app, ["show", str(folder)])
    assert said.exit_code == 2 and "bundle has no model.onnx" in " ".join(said.stderr.split())
