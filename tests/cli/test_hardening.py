"""Issue 18, the CLI and its files: every mistake a user can make ends in one line and status 2, naming
the path, option or value and the fix, checked before the work where it can be; never "internal error".
All through the installed ``inspekt`` command in a subprocess."""

from __future__ import annotations

import json
import os
import resource
import shutil
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli import cli

LEGACY = Path(__file__).parents[1] / "data" / "legacy"
INSPEKT = str(Path(sys.executable).with_name("inspekt"))  # the installed entry point, as test_cli.cli runs it


def refused(*args, preexec_fn=None) -> str:
    """Run ``inspekt ARGS``; it must fail with status 2 and one ``error:`` line on stderr, the last one (progress
    lines may come before it: stderr is not a terminal here). Returns that line."""
    command = [INSPEKT, *map(str, args)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300, preexec_fn=preexec_fn)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert "internal error" not in proc.stderr and "Traceback" not in proc.stderr
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], proc.stderr
    return errors[0]


# --- output paths: checked before the work --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    "case, expected",
    [
        ("predict --save-dir FILE", "--save-dir {file} is a file, not a folder"),
        ("predict --save-dir FILE/sub", "--save-dir {file}/sub: cannot write there (Not a directory)"),
        ("predict --save-dir /proc/...", "--save-dir /proc/inspekt-test/out: cannot write there"),
        ("eval --json DIR", "--json {dir} is a folder; give a file name"),
        ("eval --plots FILE", "--plots {file} is a file, not a folder"),
        ("eval --csv /sys/...", "--csv /sys/inspekt-test.csv: /sys: cannot write there"),
        ("runs compare --plot DIR", "--plot {dir} is a folder; give a file name"),
        ("export --out /proc/...", "/proc/inspekt-test.inspekt: /proc: cannot write there"),
    ],
)
def test_an_output_path_that_cannot_be_written_is_refused_in_one_line(case, expected, trained, synth_classes, tmp_path):
    # /proc and /sys refuse new files even to root (tests run as root, who ignores permission bits).
    file = tmp_path / "notes.txt"
    file.write_text("keep me")
    args = {
        "predict --save-dir FILE": ["predict", trained.bundle, synth_classes / "ok", "--save-dir", file],
        "predict --save-dir FILE/sub": ["predict", trained.bundle, synth_classes / "ok", "--save-dir", file / "sub"],
        "predict --save-dir /proc/...": [
            "predict",
            trained.bundle,
            synth_classes / "ok",
            "--save-dir",
            "/proc/inspekt-test/out",
        ],
        "eval --json DIR": ["eval", trained.bundle, "--data", synth_classes, "--json", tmp_path],
        "eval --plots FILE": ["eval", trained.bundle, "--data", synth_classes, "--plots", file],
        "eval --csv /sys/...": ["eval", trained.bundle, "--data", synth_classes, "--csv", "/sys/inspekt-test.csv"],
        "runs compare --plot DIR": ["runs", "compare", trained.run_dir, "--plot", tmp_path],
        "export --out /proc/...": ["export", trained.bundle, "--out", "/proc/inspekt-test.inspekt"],
    }[case]
    message = refused(*args)
    assert expected.format(file=file, dir=tmp_path) in message
    assert file.read_text() == "keep me"


@pytest.mark.slow
def test_a_save_dir_in_a_missing_bucket_is_refused_before_the_model_is_even_opened(s3_endpoint):
    # The bundle does not exist either: the output is checked first, so the bucket is what is named.
    message = refused("predict", "/no/such/bundle", "x.png", "--save-dir", "s3://no-such-bucket-here/x")
    assert "s3://no-such-bucket-here/x: cannot write there: no such bucket 'no-such-bucket-here'" in message


# --- damaged bundles --------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("schema", ["v1 (no digests)", "v2 (digests)"])
def test_a_truncated_weights_file_is_named(schema, trained, synth_classes, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(LEGACY / "classify" if schema.startswith("v1") else trained.bundle, bundle)
    weights = bundle / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    for args in (
        ["export", bundle, "--out", tmp_path / "out.inspekt"],
        ["predict", bundle, "x.png", "--backend", "torch"],
    ):
        message = refused(*args)
        assert f"{bundle}: weights.safetensors is" in message
        assert "damaged or truncated" in message or "sha256 differs" in message


@pytest.mark.slow
def test_a_card_naming_three_outputs_is_refused_by_export(trained, tmp_path):
    bundle = tmp_path / "bundle"
    shutil.copytree(trained.bundle, bundle)
    card = json.loads((bundle / "card.json").read_text())
    card["outputs"] = ["logits", "embedding", "extra"]
    (bundle / "card.json").write_text(json.dumps(card))
    message = refused("export", bundle, "--out", tmp_path / "out.inspekt")
    assert "card.json outputs names 3 outputs (logits, extra, embedding)" in message and "gives 2" in message
    assert not (tmp_path / "out.inspekt").exists()


# --- training: a full disk, a diverging loss --------------------------------------------------------


def _train_args(data: Path, out: Path, *more) -> list:
    options = {"--data": data, "--epochs": 1, "--imgsz": 32, "--out": out}
    return ["train", "classify", *(item for pair in options.items() for item in pair), "model_params.width=8", *more]


def test_an_unknown_augmentation_is_refused_before_any_image_is_read(synth_classes, tmp_path):
    message = refused(*_train_args(synth_classes, tmp_path / "runs", "--augment", "lihgt"))
    assert message.startswith("error: augment='lihgt' is neither a recipe (none, light, default, strong) nor an")
    assert message.endswith('file. Did you mean "light"?')
    assert not (tmp_path / "runs").exists()  # no run folder left behind


@pytest.mark.slow
def test_a_full_disk_while_training_is_one_line_naming_the_file(synth_classes, tmp_path):
    # A real failed write: a 600 KB file-size limit (RLIMIT_FSIZE) makes writing the 1.2 MB last.pt fail
    # with EFBIG, as ENOSPC would on a full disk (Python ignores SIGXFSZ, so the write returns the error).
    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (600_000, 600_000))

    message = refused(*_train_args(synth_classes, tmp_path / "runs"), preexec_fn=limit)
    last = tmp_path / "runs" / "classify" / "exp" / "checkpoints" / "last.pt"
    assert message.startswith(f"error: disk full while writing {last}: free space")
    assert not any(p.name.endswith(".tmp") for p in last.parent.iterdir())  # no half-written file left


@pytest.mark.slow
def test_a_learning_rate_that_diverges_at_once_is_said_loudly(synth_classes, tmp_path):
    message = refused(*_train_args(synth_classes, tmp_path / "runs", "--lr", "1e9"))
    assert "training diverged at epoch 1" in message and "nan" in message
    assert "lower --lr (it was 1e+09; try 1e+08)" in message and "nothing to keep" in message


@pytest.mark.slow
def test_a_run_that_diverges_after_a_good_epoch_keeps_that_epoch(synth_classes, tmp_path):
    import torch
    import yaml

    from inspekt.bundle import open_bundle

    trained = json.loads(cli(*_train_args(synth_classes, tmp_path / "runs"), "--json").stdout)
    run = Path(trained["run_dir"])
    # Make the finished one-epoch run an unfinished three-epoch run whose learning rate is 1e12 times
    # too high from epoch 2 on (the optimiser's and the schedule's rates live in the checkpoint).
    config = yaml.safe_load((run / "config.yaml").read_text())
    (run / "config.yaml").write_text(yaml.safe_dump(config | {"epochs": 3}))
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=True)
    state["finished"] = False
    state["scheduler"]["base_lrs"] = [lr * 1e12 for lr in state["scheduler"]["base_lrs"]]
    torch.save(state, run / "checkpoints" / "last.pt")
    shutil.rmtree(run / "bundle")
    message = refused("train", "classify", "--resume", run)
    assert "training diverged at epoch 2" in message and "lower --lr" in message
    assert f"kept the best model before it in {run / 'bundle'}" in message
    assert open_bundle(run / "bundle").card.metrics["best_epoch"] == 1


# --- options and config values --------------------------------------------------------------------


@pytest.mark.slow
def test_python_tags_in_a_yaml_config_are_refused_by_name(tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text('epochs: !!python/object/apply:os.system ["touch pwned"]\n')
    message = refused("train", "classify", "--data", tmp_path, "--config", config)
    assert f"{config}: the YAML tag !!python/object/apply:os.system is not allowed" in message
    message = refused("train", "classify", "--data", tmp_path, "epochs=!!python/name:os.system")
    assert "override 'epochs=!!python/name:os.system': the YAML tag !!python/name:os.system" in message


@pytest.mark.slow
def test_drift_permutations_are_capped_before_profiling(synth_classes):
    message = refused("drift", synth_classes, synth_classes, "--permutations", "1000000000")
    assert "permutations must be 19 to 5000, not 1000000000" in message


@pytest.mark.slow
@pytest.mark.parametrize("threads", ["0", "-3"])
def test_predict_refuses_fewer_than_one_thread(threads, trained, synth_classes):
    proc = cli("predict", trained.bundle, synth_classes / "ok", "--threads", threads, check=False)
    assert proc.returncode == 2 and "--threads" in proc.stderr and "greater than or equal to 1" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.slow
def test_serve_checks_the_log_level_before_loading_models(tmp_path):
    # The bundle does not exist: the log level is checked before any model is loaded.
    message = refused("serve", tmp_path / "nope.inspekt", "--log-level", "warn")
    assert "--log-level warn: not a log level" in message and 'Did you mean "warning"?' in message


@pytest.mark.slow
def test_serve_on_a_port_in_use_fails_before_the_banner(trained):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        message = refused("serve", trained.bundle, "--port", port)
    assert message == (
        f"error: port {port} is in use on 127.0.0.1 (another server listens there); choose another --port "
        "or stop that server"
    )


@pytest.mark.slow
def test_data_split_never_overwrites_a_file_it_did_not_write(synth_classes, tmp_path):
    image = tmp_path / "good.png"
    shutil.copy(next((synth_classes / "ok").iterdir()), image)
    before = image.read_bytes()
    message = refused("data", "split", synth_classes, "--out", image)
    assert f"--out {image} exists and is not a split CSV written by inspekt" in message and "--overwrite" in message
    assert image.read_bytes() == before
    split = tmp_path / "split.csv"
    cli("data", "split", synth_classes, "--out", split)
    cli("data", "split", synth_classes, "--out", split, "--seed", 1)  # its own earlier split: replaced
    cli("data", "split", synth_classes, "--out", image, "--overwrite")
    assert image.read_text().startswith("path,label,mask,split")


# --- permissions: what inspekt writes, another account can read ----------------------------------


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.slow
def test_bundles_and_checkpoints_follow_the_umask(trained, tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    assert _mode(trained.bundle) == 0o777 & ~mask  # a run's bundle folder (was mkdtemp's 0700)
    assert _mode(trained.bundle / "card.json") == 0o666 & ~mask
    assert _mode(Path(trained.run_dir) / "checkpoints" / "best.safetensors") == 0o666 & ~mask  # was 0600

    def umask_027():
        os.umask(0o027)

    out = tmp_path / "exported"
    command = [INSPEKT, "export", str(trained.bundle), "--out", str(out), "--folder"]
    subprocess.run(command, check=True, capture_output=True, timeout=300, preexec_fn=umask_027)
    assert _mode(out) == 0o750 and all(_mode(p) == 0o640 for p in out.iterdir())
