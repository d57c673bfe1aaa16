"""Progress everywhere (issue 19): every long phase says what it is doing, also when the output is not
a terminal (logs, CI, the workbench's job log), through the one mechanism of ``inspekt.progress``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from inspekt import progress

INSPEKT = os.path.join(os.path.dirname(sys.executable), "inspekt")


def assert_in_order(text: str, phases: list[str]) -> None:
    """Each phase appears in ``text``, after the one before it."""
    at = 0
    for phase in phases:
        found = text.find(phase, at)
        assert found >= 0, f"{phase!r} missing after position {at} in:\n{text}"
        at = found + len(phase)


def test_plain_lines_say_when_a_step_starts_how_far_it_is_and_when_a_long_one_ends():
    lines: list[str] = []
    reporter = progress.PlainReporter(lines.append, every=0)
    with progress.reporting(reporter):
        with progress.step("caching images", 4) as advance:
            advance()
            advance(3)
        with progress.step("epoch 1/2", 10, announce=False):
            pass
        progress.say("sampler balanced")
        progress.warn("collapsed")
    assert lines[0] == "caching images 0/4 (0%)" and lines[1].startswith("caching images 1/4 (25%), ")
    assert lines[2] == "caching images 4/4 (100%)" and lines[3].startswith("caching images done in")
    assert lines[4:] == ["sampler balanced", "warning: collapsed"]  # the quiet epoch step said nothing


def test_plain_lines_are_throttled():
    lines: list[str] = []
    with progress.reporting(progress.PlainReporter(lines.append, every=3600)):
        with progress.step("profiling", 1000) as advance:
            for _ in range(1000):
                advance()
    assert lines == ["profiling 0/1000 (0%)"]


def test_without_a_front_the_library_logs(caplog):
    with caplog.at_level("INFO", logger="inspekt"), progress.step("writing data/x", 2):
        progress.warn("careful")
    assert [r.getMessage() for r in caplog.records] == ["writing data/x 0/2 (0%)", "careful"]
    assert caplog.records[1].levelname == "WARNING"


STEPS = """
import logging, sys
from inspekt import progress
if sys.argv[1] == "configured":
    logging.basicConfig(level=logging.INFO, format="LOG %(levelname)s %(message)s", stream=sys.stdout)
if sys.argv[1] == "muted":
    logging.getLogger("inspekt").setLevel(logging.WARNING)
if sys.argv[1] == "level only":  # a level but no handler: nothing would show INFO, so stderr lines it is
    logging.getLogger("inspekt").setLevel(logging.INFO)
with progress.step("writing data/x", 2) as advance:
    advance(2)
progress.warn("careful")
"""


def test_without_logging_configured_the_python_api_writes_plain_lines_on_stderr():
    """A script or notebook calling the library (no front, logging untouched) sees its progress; once
    logging is configured, the lines go through it instead, and nothing is written twice."""
    bare = subprocess.run([sys.executable, "-c", STEPS, "bare"], capture_output=True, text=True, timeout=120)
    assert bare.returncode == 0, bare.stderr
    assert bare.stderr.splitlines() == ["writing data/x 0/2 (0%)", "warning: careful"] and bare.stdout == ""
    logged = subprocess.run([sys.executable, "-c", STEPS, "configured"], capture_output=True, text=True, timeout=120)
    assert logged.returncode == 0, logged.stderr
    assert logged.stdout.splitlines() == ["LOG INFO writing data/x 0/2 (0%)", "LOG WARNING careful"]
    assert logged.stderr == ""
    muted = subprocess.run([sys.executable, "-c", STEPS, "muted"], capture_output=True, text=True, timeout=120)
    assert muted.stderr.splitlines() == ["careful"]  # warnings only, through logging's last resort
    level = subprocess.run([sys.executable, "-c", STEPS, "level only"], capture_output=True, text=True, timeout=120)
    assert level.stderr.splitlines() == bare.stderr.splitlines()


def _run(args: list[str]) -> subprocess.CompletedProcess:
    """An inspekt command with stdout and stderr piped (not a terminal)."""
    proc = subprocess.run(args, capture_output=True, text=True, timeout=600, env=os.environ | {"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    return proc


def test_train_segment_reports_every_phase_when_not_a_terminal(tmp_path):
    from inspekt.data.synth import write_dataset

    data = write_dataset(tmp_path / "seg", n=16, size=32, seed=1, layout="segmentation").root
    args = ["--data", data, "--model", "tiny_unet", "--epochs", "2", "--imgsz", "32", "--batch", "4", "--out"]
    args += [tmp_path / "runs", "model_params.width=4", "threads=1"]
    proc = _run([INSPEKT, "train", "segment", *map(str, args)])
    phases = ["caching training images 0/", "caching validation images 0/", "data ", "model: tiny_unet"]
    phases += ["epoch   1/2", "epoch   2/2", "validating the kept weights"]
    phases += ["exporting the bundle: ONNX export and parity check"]
    phases += ["drift reference: profiling training images", "drift reference: predicting held-out images"]
    assert_in_order(proc.stderr, phases)
    # what was not given comes from segmentation's own defaults, written where the run says how it trained
    import yaml

    (written,) = (yaml.safe_load(f.read_text()) for f in (tmp_path / "runs").rglob("config.yaml"))
    assert (written["epochs"], written["batch"], written["model_params"]) == (2, 4, {"width": 4})  # given
    assert (written["sampler"], written["class_weights"], written["threshold"]) == ("balanced", "auto", "auto")


def test_train_anomaly_with_the_methods_own_epochs_says_each_epoch_once(tmp_path):
    """The method decides its epochs (10 for DRAEM): the epoch lines carry the count, and no bare
    "training 1", "training 2" ... line repeats them."""
    import re

    from inspekt.data.synth import write_dataset

    data = write_dataset(tmp_path / "mv", n=24, size=32, seed=2, layout="mvtec").root
    args = ["--data", data, "--imgsz", "32", "--out", tmp_path / "runs", "model_params.epoch_images=4"]
    args += ["model_params.width=4", "threads=1"]
    proc = _run([INSPEKT, "train", "anomaly", *map(str, args)])
    phases = ["training ...", "epoch   1/10", "epoch  10/10", "calibrating on validation images 0/"]
    assert_in_order(proc.stderr, phases + ["exporting the bundle"])
    assert not re.search(r"^training \d+$", proc.stderr, re.MULTILINE), proc.stderr


DEMO = """
import sys
from inspekt import demo
demo.DATASETS = {"surfaces": ("classes", 32, 0), "surfaces-seg": ("segmentation", 12, 1),
                 "surfaces-mvtec": ("mvtec", 24, 2), "incoming": ("classes", 8, 9)}
demo.IMAGE_SIZE = demo.IMGSZ = 32
demo.EPOCHS = demo.SEG_EPOCHS = demo.ANOMALY_EPOCHS = 1
from inspekt.cli import app
app(["demo", "--workspace", sys.argv[1]])
"""


def test_demo_reports_every_phase_when_not_a_terminal(tmp_path: Path):
    proc = _run([sys.executable, "-c", DEMO, str(tmp_path / "ws")])
    phases = ["building the demo workspace", "writing data/surfaces 0/32", "writing data/incoming 0/8"]
    phases += ["writing data/incoming-drifted", "training surface-classifier.inspekt 0/1", "caching training images"]
    phases += ["exporting the bundle", "drift reference: profiling", "training surface-segmenter.inspekt"]
    phases += ["caching training images", "exporting the bundle", "training surface-anomaly.inspekt"]
    phases += ["caching training images", "exporting the bundle", "drift reference: profiling"]
    assert_in_order(proc.stderr, phases)
    assert "inspekt demo workspace" in proc.stdout


def test_train_without_epochs_counts_to_the_tasks_own_default(tmp_path: Path):
    """classify's own 55 epochs, not the config's class default of 30 (stopped once the count is shown)."""
    from inspekt.data.synth import write_dataset

    data = write_dataset(tmp_path / "d", n=16, size=32, seed=0).root
    args = [INSPEKT, "train", "classify", "--data", str(data), "--imgsz", "32", "--out", str(tmp_path / "runs")]
    proc = subprocess.Popen([*args, "threads=1"], stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        seen = next((line for line in proc.stderr if line.startswith("training ") or "epoch" in line), None)
    finally:
        proc.kill()
        proc.wait()
    assert seen == "training 0/55 (0%)\n"


def test_rows_printed_while_a_bar_is_live_on_a_terminal_stay_on_stdout(capsys):
    """Rich redirects stdout into its bar's console by default: with stderr on a terminal, `predict --json`
    rows went to stderr between the bars, and stdout (the file the user redirected to) stayed empty."""
    import io

    from rich.console import Console

    from inspekt.cli.common import RichReporter

    terminal = io.StringIO()
    reporter = RichReporter(Console(file=terminal, force_terminal=True))
    with progress.reporting(reporter), progress.step("predicting", 2) as advance:
        print('{"path": "a.png"}')
        advance()
    reporter.bars.stop()
    assert capsys.readouterr().out == '{"path": "a.png"}\n' and "a.png" not in terminal.getvalue()


def test_a_failed_drift_step_does_not_say_done(capsys, monkeypatch):
    from inspekt.cli.drift import _progress

    real = progress.time.monotonic  # a step starts by the real clock; its end is read 100 s later
    try:
        with _progress() as (on_start, advance):
            on_start("reference", 3)
            monkeypatch.setattr(progress.time, "monotonic", lambda: real() + 100)  # a long step: "done in" if ended
            raise OSError("disk gone")
    except OSError:
        pass
    said = capsys.readouterr().err
    assert "profiling reference" in said and "done" not in said, said
