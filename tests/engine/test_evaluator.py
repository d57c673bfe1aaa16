"""Evaluation of bundles on datasets, thresholds, the error gallery and run comparison,
through the library and the CLI (CliRunner in-process, one subprocess)."""

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspekt.bundle import copy_bundle, open_bundle
from inspekt.card import positive_class
from inspekt.cli import app
from inspekt.engine.evaluator import evaluate, save_threshold, write_csv, write_json
from inspekt.engine.predictor import Predictor
from inspekt.engine.runs import read_run
from inspekt.errors import ConfigError, DatasetError
from inspekt.io import load_image
from inspekt.tasks.classify.metrics import best_f1_threshold
from inspekt.tasks.classify.plots import plot_evaluation

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def read_csv_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def binary(synth_classes, tmp_path_factory):
    """A 2-class dataset (ok, pore) and a tiny model trained on it through `inspekt train`."""
    root = tmp_path_factory.mktemp("binary")
    for name in ("ok", "pore"):
        shutil.copytree(synth_classes / name, root / "data" / name)
    result = run(
        "train",
        "classify",
        "--data",
        root / "data",
        "--epochs",
        2,
        "--imgsz",
        32,
        "--batch",
        16,
        "--out",
        root / "runs",
        "--json",
        "model_params.width=8",
    )
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout.strip().splitlines()[-1])
    return root / "data", Path(trained["run_dir"])


def bundle_copy(run_dir, out, archive=False):
    """A private copy of a run's bundle, so a test may rewrite its card."""
    return copy_bundle(open_bundle(run_dir / "bundle"), out, archive=archive)


def csv_dataset(tmp_path, synth_classes, labels_and_splits):
    """A CSV dataset over the synthetic images: one row per (class folder, label, split, count)."""
    lines = ["path,label,split"]
    for folder, label, split, count in labels_and_splits:
        for image in sorted((synth_classes / folder).glob("*.png"))[:count]:
            lines.append(f"{image},{label},{split}")
    path = tmp_path / "data.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_agrees_with_the_predictor_and_its_csv(trained, synth_classes, tmp_path):
    result = evaluate(trained.bundle, synth_classes)
    assert result.split == "all" and len(result.paths) == 80 and not result.skipped
    labels = {p.source: p.label for p in Predictor.load(trained.bundle).predict(result.paths)}
    rows = read_csv_rows(write_csv(result, tmp_path / "rows.csv"))
    assert list(rows[0]) == ["path", "true", "predicted", "correct", *(f"score_{c}" for c in result.classes)]
    assert all(row["predicted"] == labels[row["path"]] for row in rows)  # argmax: the Predictor's label
    assert all(row["true"] == Path(row["path"]).parent.name for row in rows)
    correct = [row["correct"] == "True" for row in rows]
    assert result.metrics["accuracy"] == pytest.approx(np.mean(correct))
    assert np.sum(result.metrics["confusion"]) == 80 and result.sweep is None and result.threshold is None
    saved = json.loads(write_json(result, tmp_path / "m.json").read_text())
    assert saved["metrics"]["macro_f1"] == result.metrics["macro_f1"] and saved["n_skipped"] == 0


def test_eval_picks_test_split_and_names_the_available_ones(trained, synth_classes, tmp_path):
    data = csv_dataset(
        tmp_path, synth_classes, [("ok", "ok", "train", 6), ("pore", "pore", "test", 4), ("lop", "lop", "test", 3)]
    )
    result = evaluate(trained.bundle, data)
    assert result.split == "test" and len(result.paths) == 7
    assert [row["support"] for row in result.metrics["per_class"]] == [3, 0, 4, 0]  # classes: lop, ok, pore, scratch
    assert len(evaluate(trained.bundle, data, split="training").paths) == 6  # aliases accepted
    with pytest.raises(DatasetError, match=r"no 'val' split \(splits available: train, test\)"):
        evaluate(trained.bundle, data, split="val")


def test_eval_counts_the_images_the_model_saw_however_they_are_listed(trained, synth_classes, tmp_path):
    """A split CSV over the training folder calls its "test" images fresh; the bundle's record says the
    model trained or validated on every one of them, and the note says so."""
    from inspekt.data.synth import write_dataset
    from inspekt.engine.evaluator import training_images_note

    data = csv_dataset(tmp_path, synth_classes, [("ok", "ok", "train", 6), ("pore", "pore", "test", 4)])
    result = evaluate(trained.bundle, data)
    assert result.split == "test" and result.metrics["n_seen"] == 4
    note = training_images_note(result.split, result.metrics)
    assert note.startswith("4 of the evaluated images trained or validated the model, so the scores flatter it")
    fresh = write_dataset(tmp_path / "fresh", n=8, size=40, seed=11).root  # other pictures, other file sizes
    result = evaluate(trained.bundle, fresh)
    assert result.metrics["n_seen"] == 0 and training_images_note(result.split, result.metrics) is None
    old = {"accuracy": 1.0}  # a bundle that keeps no record: the split's name decides
    assert "flatter" in training_images_note("all", old) and training_images_note("test", old) is None


def test_corrupt_image_is_skipped_and_reported(trained, synth_classes, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synth_classes, data)
    (data / "ok" / "broken.png").write_bytes(os.urandom(300))
    result = evaluate(trained.bundle, data)
    assert len(result.paths) == 80 and result.metrics["n"] == 80
    assert [Path(s.path).name for s in result.skipped] == ["broken.png"]
    assert result.to_dict()["n_skipped"] == 1 and "broken.png" in result.to_dict()["skipped"][0]["path"]


def test_labels_the_model_does_not_know_are_an_error(trained, synth_classes, tmp_path):
    data = csv_dataset(tmp_path, synth_classes, [("ok", "ok", "test", 3), ("pore", "dent", "test", 2)])
    with pytest.raises(DatasetError, match=r"label\(s\) dent are not classes of the model \(lop, ok, pore, scratch\)"):
        evaluate(trained.bundle, data)


def test_set_threshold_best_f1_on_a_binary_archive(binary, tmp_path):
    data, run_dir = binary
    model = bundle_copy(run_dir, tmp_path / "m.inspekt", archive=True)
    result = run(
        "eval",
        model,
        "--data",
        data,
        "--set-threshold",
        "best-f1",
        "--json",
        tmp_path / "e.json",
        "--csv",
        tmp_path / "e.csv",
    )
    assert result.exit_code == 0, result.output
    saved = json.loads((tmp_path / "e.json").read_text())
    card = open_bundle(model).card
    positive = positive_class(card.classes)
    assert positive == "pore" and saved["positive_class"] == positive
    assert card.thresholds == {positive: saved["threshold"]}
    assert saved["threshold"] == best_f1_threshold(saved["sweep"])["threshold"]
    rows = read_csv_rows(tmp_path / "e.csv")
    decided = [positive if float(r[f"score_{positive}"]) >= saved["threshold"] else "ok" for r in rows]
    assert [r["predicted"] for r in rows] == decided  # metrics reported at the chosen threshold
    assert saved["metrics"]["accuracy"] == pytest.approx(np.mean([r["predicted"] == r["true"] for r in rows]))


def test_a_stored_threshold_decides_later_evaluations(binary, tmp_path):
    data, run_dir = binary
    model = bundle_copy(run_dir, tmp_path / "m")
    assert save_threshold(model, 0.3).thresholds == {"pore": 0.3}
    result = evaluate(model, data)
    assert result.threshold == 0.3 and result.positive == "pore"
    assert np.array_equal(result.y_pred == 1, result.probs[:, 1] >= 0.3)  # classes: ok, pore
    assert open_bundle(model).read("model.onnx") == open_bundle(run_dir / "bundle").read("model.onnx")
    with pytest.raises(ConfigError, match="probability in"):
        save_threshold(model, 1.5)


def test_eval_advises_the_best_f1_threshold_when_the_stored_one_is_far_off(binary, tmp_path):
    data, run_dir = binary
    model = bundle_copy(run_dir, tmp_path / "m")
    save_threshold(model, 1.0)  # "pore" only at probability 1: every pore passes as ok
    result = run("eval", model, "--data", data)
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert "note: at the stored threshold F1 is 0.00 (100% of the defects pass, 0% of the OK images rejected)" in said
    assert "`inspekt eval --set-threshold best-f1` stores it" in said
    best = evaluate(model, data).with_threshold("best-f1")
    assert f"a threshold of {best.threshold:g} gives F1" in said
    save_threshold(model, best.threshold)  # the best one stored: nothing to advise
    again = run("eval", model, "--data", data)
    assert again.exit_code == 0 and "note: at the stored threshold" not in " ".join(again.output.split())


def test_threshold_is_refused_for_multiclass_before_predicting(trained, synth_classes, tmp_path):
    model = bundle_copy(trained.run_dir, tmp_path / "m")
    result = run("eval", model, "--data", synth_classes, "--set-threshold", "0.4")
    assert result.exit_code == 2 and "binary classifiers only; this model has 4 classes" in result.output
    assert open_bundle(model).card.thresholds == {}
    bad = run("eval", model, "--data", synth_classes, "--set-threshold", "best")
    assert bad.exit_code == 2 and "is not best-f1 or a probability" in bad.output


@pytest.mark.slow
def test_plots_and_error_gallery(binary, tmp_path):
    data, run_dir = binary
    result = evaluate(run_dir, data).with_threshold(0.0)  # everything "pore": every ok image is a false positive
    assert result.metrics["n_seen"] == len(result.paths)  # kept at the new threshold: all of them trained it
    written = plot_evaluation(result, tmp_path / "plots", gallery_limit=5)
    names = sorted(p.name for p in written)
    assert names == ["confusion.png", "confusion_normalized.png", "gallery.html", "roc_pr.png", "threshold_sweep.png"]
    for path in written[:-1]:
        assert load_image(path).std() > 0
    page = (tmp_path / "plots" / "gallery.html").read_text()
    assert page.count("<figure>") == 5 and page.count("false positive") == 5
    assert "20 of 40 images misclassified" in page
    overlays = sorted((tmp_path / "plots" / "gallery").glob("*.png"))
    assert len(overlays) == 5 and all(f'src="gallery/{p.name}"' in page for p in overlays)
    first = result.misclassified(1)[0]
    assert load_image(overlays[0]).shape[:2] == load_image(result.paths[first]).shape[:2]


@pytest.mark.slow
def test_eval_cli_writes_files_and_prints_a_summary(trained, synth_classes, tmp_path):
    result = run(
        "eval",
        trained.run_dir,
        "--data",
        synth_classes,
        "--json",
        tmp_path / "m.json",
        "--csv",
        tmp_path / "rows.csv",
        "--plots",
        tmp_path / "plots",
    )
    assert result.exit_code == 0, result.output
    for text in ("macro F1", "per class", "confusion matrix", "scratch", "loaded 80 images, skipped 0"):
        assert text in result.output
    assert len(read_csv_rows(tmp_path / "rows.csv")) == 80
    saved = json.loads((tmp_path / "m.json").read_text())["metrics"]
    assert saved["n"] == 80 and saved["n_seen"] == 80  # the training folder: every image trained or validated it
    assert "note: 80 of the evaluated images trained or validated the model" in " ".join(result.output.split())
    assert (tmp_path / "plots" / "gallery.html").is_file() and not (tmp_path / "plots" / "threshold_sweep.png").exists()


@pytest.mark.slow
def test_eval_json_to_stdout_in_a_subprocess(trained, synth_classes):
    exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
    proc = subprocess.run(
        [exe, "eval", str(trained.bundle), "--data", str(synth_classes), "--json", "-"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_images"] == 80


def test_eval_reports_escape_and_false_reject_rates_at_the_decision(trained, synth_classes, tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
    command = [exe, "eval", str(trained.bundle), "--data", str(synth_classes), "--csv", str(tmp_path / "rows.csv")]
    proc = subprocess.run([*command, "--json", "-"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads(proc.stdout)["metrics"]
    rows = read_csv_rows(tmp_path / "rows.csv")
    defects = [r for r in rows if r["true"] != "ok"]
    oks = [r for r in rows if r["true"] == "ok"]
    assert metrics["escapes"] == sum(r["predicted"] == "ok" for r in defects)  # a defect passed as OK
    assert metrics["escape_rate"] == pytest.approx(metrics["escapes"] / len(defects))
    assert metrics["false_rejects"] == sum(r["predicted"] != "ok" for r in oks)  # an OK part rejected
    assert metrics["false_reject_rate"] == pytest.approx(metrics["false_rejects"] / len(oks))
    table = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "160"})
    assert "escape rate (defects passed as OK)" in table.stdout and "false-reject rate" in table.stdout


def test_runs_compare(trained, binary, tmp_path):
    _, binary_run = binary
    result = run("runs", "compare", trained.run_dir, binary_run, "--json", "--plot", tmp_path / "runs.png")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    history = read_csv_rows(trained.run_dir / "results.csv")
    first = rows[0]
    assert first["epochs_run"] == len(history) and first["imgsz"] == [32, 32]
    assert first["best_val_macro_f1"] == pytest.approx(max(float(r["val_macro_f1"]) for r in history))
    assert first["train_seconds"] == pytest.approx(sum(float(r["seconds"]) for r in history))
    assert rows[1]["bundle_bytes"] == sum(p.stat().st_size for p in (binary_run / "bundle").iterdir())
    assert load_image(tmp_path / "runs.png").std() > 0
    table = run("runs", "compare", trained.run_dir, binary_run)
    assert table.exit_code == 0 and "F1 (epoch)" in table.output and read_run(binary_run).model in table.output


def test_runs_compare_names_what_is_missing(trained, tmp_path):
    missing = run("runs", "compare", tmp_path / "nope")
    assert missing.exit_code == 2 and "nope: no such run folder" in missing.output
    partial = tmp_path / "partial"
    shutil.copytree(trained.run_dir, partial)
    (partial / "results.csv").unlink()
    result = run("runs", "compare", partial)
    assert result.exit_code == 2 and "results.csv missing" in result.output
