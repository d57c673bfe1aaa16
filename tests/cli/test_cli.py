"""The CLI through its real front doors: Typer's CliRunner in-process, and subprocesses."""

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from inspekt.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def cli(*args, check=True):
    """Run the installed `inspekt` entry point in a subprocess."""
    exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def test_help_lists_the_command_groups():
    result = run("--help")
    assert result.exit_code == 0
    for command in ("train", "predict", "export", "data", "checks", "version"):
        assert command in result.output


def test_version_and_checks_json():
    assert run("version").output.strip() == "0.1.0"
    found = json.loads(run("checks", "--json").output)
    assert "CPUExecutionProvider" in found["onnxruntime_providers"]
    assert found["versions"]["torch"].startswith("2.13")
    assert isinstance(found["torchvision_workaround_active"], bool)


def test_data_synth_info_split(tmp_path):
    out = json.loads(
        run("data", "synth", tmp_path / "s", "--n", 24, "--size", 32, "--layout", "segmentation", "--json").stdout
    )
    assert out["n_images"] == 24
    info = json.loads(run("data", "info", tmp_path / "s", "--json").stdout)
    assert info["layout"] == "segmentation" and info["n_images"] == 24 and info["masks_found"] == 24
    split = json.loads(run("data", "split", tmp_path / "s", "--out", tmp_path / "split.csv", "--json").stdout)
    assert sum(sum(c.values()) for c in split["counts"].values()) == 24
    assert (tmp_path / "split.csv").read_text().startswith("path,label,mask,split")


@pytest.mark.slow
def test_train_predict_export_through_subprocesses(synth_classes, tmp_path):
    trained = json.loads(
        cli(
            "train",
            "classify",
            "--data",
            synth_classes,
            "--epochs",
            2,
            "--imgsz",
            32,
            "--out",
            tmp_path / "runs",
            "--json",
            "model_params.width=8",
        ).stdout
    )
    assert trained["run_dir"].endswith("classify/exp") and trained["bundle"].endswith("bundle")
    lines = cli("predict", trained["bundle"], synth_classes / "ok", "--json").stdout.strip().splitlines()
    rows = [json.loads(line) for line in lines]
    assert len(rows) == 20 and all({"path", "label", "score", "scores"} <= set(r) for r in rows)
    exported = json.loads(cli("export", trained["run_dir"], "--out", tmp_path / "m.inspekt", "--json").stdout)
    assert exported["bundle"].endswith("m.inspekt") and exported["parity_max_abs_diff"] <= 1e-4
    again = json.loads(cli("predict", exported["bundle"], synth_classes / "ok", "--json").stdout.splitlines()[0])
    assert again["scores"] == pytest.approx(rows[0]["scores"], abs=1e-6)


@pytest.mark.slow
def test_predict_reports_bad_files_and_goes_on(trained, synth_classes, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("this is text")
    result = cli("predict", trained.bundle, bad, synth_classes / "pore", "--json")
    assert len(result.stdout.strip().splitlines()) == 20
    assert f"{bad}: not an image" in result.stderr and "skipped 1" in result.stderr
    assert "predicting 0/21" in result.stderr  # --json keeps stdout to the data; progress still goes to stderr


def test_debug_works_after_the_command_too(tmp_path):
    """The errors say "run again with --debug"; at the end of a command it was "No such option: --debug"."""
    result = cli("data", "info", tmp_path / "missing", "--debug", check=False)
    assert "Traceback" in result.stderr and "no such file or folder" in result.stderr


@pytest.mark.parametrize("form", ["--json", "--csv", "--topk"])
def test_predict_streams_json_and_csv_and_ctrl_c_keeps_what_was_printed(trained, synth_classes, monkeypatch, form):
    from inspekt.engine.predictor import Predictor

    predict, calls = Predictor.predict, []

    def interrupted_at_the_second_chunk(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return predict(self, *args, **kwargs)

    monkeypatch.setattr(Predictor, "predict", interrupted_at_the_second_chunk)
    args = [form, "2"] if form == "--topk" else [form]  # --topk: the table
    result = run("predict", trained.bundle, synth_classes / "pore", *args, "--batch", 4)
    assert result.exit_code == 130 and "interrupted: 4 of 20 images predicted" in result.stderr
    lines = result.stdout.strip().splitlines()
    if form == "--topk":  # the table of what was predicted is printed at the interruption
        assert sum("pore_" in line for line in lines) == 4
        return
    assert len(lines) == (4 if form == "--json" else 5)  # the first chunk's rows (CSV: and its header)
    assert "pore" in lines[-1]


@pytest.mark.slow
@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "info", "/no/such/dir"], "error: /no/such/dir: no such file or folder"),
        (["predict", "model.pth", "x.png"], "pickles"),
        (["train", "classify", "--data", "d", "epoch=3"], "unknown config key 'epoch'"),
        (["train", "classify", "--data", "d", "--model", "tiny_cn"], 'Did you mean "tiny_cnn"'),
    ],
)
def test_user_errors_are_one_line_with_status_2(args, message, tmp_path):
    if args[0] == "predict":
        (tmp_path / "model.pth").write_bytes(b"x")
        args = ["predict", tmp_path / "model.pth", "x.png"]
    result = cli(*args, check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3  # one message, wrapped at most by the terminal width


@pytest.mark.slow
def test_unknown_option_suggests_the_right_one():
    result = cli("train", "classify", "--data", "d", "--epoch", "3", check=False)
    assert result.returncode == 2 and "--epochs" in result.stderr


@pytest.mark.slow
def test_debug_shows_the_traceback():
    result = cli("--debug", "data", "info", "/no/such/dir", check=False)
    assert result.returncode != 0 and "Traceback" in result.stderr and "DatasetError" in result.stderr


def test_models_lists_the_registry():
    rows = {row["name"]: row for row in json.loads(run("models", "--json").output)}
    assert {"tiny_cnn", "resnet18", "efficientnet_b0", "mobilenetv3_small_100", "convnext_atto"} <= set(rows)
    assert rows["resnet18"]["task"] == "classify" and "drop_rate" in rows["resnet18"]["parameters"]
    segment = {row["name"]: row for row in json.loads(run("models", "--task", "segment", "--json").output)}
    assert {"tiny_unet", "unet", "unetplusplus", "fpn"} <= set(segment)
    assert all(row["task"] == "segment" for row in segment.values()) and "encoder" in segment["unet"]["parameters"]


@pytest.mark.slow
def test_export_folder_and_overwrite(trained, tmp_path):
    first = run("export", trained.run_dir, "--out", tmp_path / "copy", "--folder", "--json")
    assert first.exit_code == 0, first.output
    assert (tmp_path / "copy" / "card.json").is_file() and (tmp_path / "copy" / "model.onnx").is_file()
    again = cli("export", trained.run_dir, "--out", tmp_path / "copy", "--folder", check=False)
    assert again.returncode == 2 and "already exists; choose another path or pass --overwrite" in again.stderr
    assert run("export", trained.run_dir, "--out", tmp_path / "copy", "--folder", "--overwrite").exit_code == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    refused = cli("export", trained.run_dir, "--out", tmp_path / "mine", "--folder", "--overwrite", check=False)
    assert refused.returncode == 2 and "is not a model bundle" in refused.stderr
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    into = cli("export", trained.run_dir, "--out", tmp_path / "mine", check=False)  # a file into a folder
    said = " ".join(into.stderr.split())
    assert into.returncode == 2 and f"{tmp_path / 'mine'} is a folder; name the bundle file to write" in said, said
    assert not (tmp_path / "mine.inspekt").exists()  # it was written beside the folder, under the folder's name


@pytest.mark.slow
def test_demo_command_builds_and_tours(tmp_path, small_demo):
    result = run("demo", "--workspace", tmp_path / "ws")
    assert result.exit_code == 0, result.output
    assert "surface-classifier.inspekt" in result.output and "Try next" in result.output
    assert "predictions on data/incoming" in result.output
    assert "nothing (everything was already there)" in run("demo", "--workspace", tmp_path / "ws").output


@pytest.mark.slow
def test_predict_expands_a_quoted_glob(trained, synth_classes):
    result = cli("predict", trained.bundle, str(synth_classes / "*" / "scratch_*.png"), "--json")
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rows) == 20 and all("/scratch/scratch_" in r["path"] for r in rows)


@pytest.mark.slow
def test_a_reader_that_leaves_early_stops_the_output_quietly(trained, synth_classes):
    # `inspekt predict ... --json | head -1`: the reader closes the pipe before inspekt writes.
    command = [sys.executable, "-m", "inspekt", "predict", str(trained.bundle), str(synth_classes / "ok"), "--json"]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, stderr
    assert "internal error" not in stderr and "Traceback" not in stderr
