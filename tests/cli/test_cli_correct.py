"""inspekt data correct: one fix per call, in the dataset's corrections.csv, read by every command; and what the
other data commands refuse or warn about (counts out of range, a split that replaces splits)."""

from __future__ import annotations

import csv
import json

import numpy as np
from typer.testing import CliRunner

from conftest import png_bytes
from inspekt.cli import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _data(tmp_path):
    root = tmp_path / "parts"
    for label in ("ok", "crack"):
        (root / label).mkdir(parents=True)
        (root / label / f"{label}0.png").write_bytes(png_bytes(np.full((6, 8), 90, np.uint8)))
    return root


def test_a_label_fix_is_recorded_once_and_seen_by_data_info(tmp_path):
    root = _data(tmp_path)
    done = run("data", "correct", root, "ok/ok0.png", "--label", "crack", "--who", "ana", "--note", "scratch")
    assert done.exit_code == 0, done.output
    assert "ok/ok0.png: label ok -> crack" in done.output
    assert "nothing recorded" in run("data", "correct", root, "ok/ok0.png", "--label", "crack").output
    with (root / ".inspekt-corrections" / "corrections.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["path"], r["new"], r["who"], r["note"]) for r in rows] == [("ok/ok0.png", "crack", "ana", "scratch")]
    assert json.loads(run("data", "info", root, "--json").stdout)["counts"] == {"all": {"crack": 2}}


def test_a_mask_an_exclusion_and_an_undo(tmp_path):
    root = _data(tmp_path)
    mask = tmp_path / "fix.png"
    drawn = np.zeros((6, 8), np.uint8)
    drawn[2:4, 3:6] = 255
    mask.write_bytes(png_bytes(drawn))
    assert run("data", "correct", root, "crack/crack0.png", "--mask", mask).exit_code == 0
    assert "exclude false -> true" in run("data", "correct", root, "ok/ok0.png", "--exclude").output
    assert "exclude true -> false" in run("data", "correct", root, str(root / "ok" / "ok0.png"), "--undo").output
    from inspekt.data import open_dataset

    dataset = open_dataset(root)
    assert len(dataset) == 2
    fixed = next(s for s in dataset.samples if s.label == "crack").mask
    from inspekt.io import load_image

    assert ((load_image(fixed, mode="L") > 0) == (drawn > 0)).all()


def test_mistakes_are_one_line_with_the_fix(tmp_path):
    root = _data(tmp_path)
    both = run("data", "correct", root, "ok/ok0.png", "--label", "crack", "--exclude")
    assert both.exit_code != 0 and "exactly one of" in both.output
    missing = run("data", "correct", root, "ok/nope.png", "--label", "crack")
    assert missing.exit_code != 0 and "ok/nope.png: no such image" in missing.output
    nothing = run("data", "correct", root, "ok/ok0.png", "--undo")
    assert nothing.exit_code != 0 and "no correction to undo" in nothing.output
    assert "Traceback" not in both.output + missing.output + nothing.output


def test_a_label_that_is_no_class_is_refused_unless_it_is_meant_as_a_new_one(tmp_path):
    root = _data(tmp_path)
    shouting = run("data", "correct", root, "ok/ok0.png", "--label", "CRACK")
    assert shouting.exit_code == 2 and "--label 'CRACK' is not a class of" in shouting.output
    assert 'Did you mean "crack"?' in shouting.output and "--new-class" in shouting.output
    typo = run("data", "correct", root, "ok/ok0.png", "--label", "crak")
    assert typo.exit_code == 2 and 'Did you mean "crack"?' in typo.output
    assert not (root / ".inspekt-corrections" / "corrections.csv").exists()  # nothing recorded
    meant = run("data", "correct", root, "ok/ok0.png", "--label", "dent", "--new-class")
    assert meant.exit_code == 0 and "label ok -> dent" in meant.output
    again = run("data", "correct", root, "crack/crack0.png", "--label", "dent")  # a class now, by that fix
    assert again.exit_code == 0 and "label crack -> dent" in again.output
    # the same where the fixes live in a workspace (a read-only dataset): the class its fix added counts too
    ro, ws = _data(tmp_path / "ro"), tmp_path / "ws"
    for folder in (ro / "ok", ro / "crack", ro):
        folder.chmod(0o555)
    try:
        added = run("data", "correct", ro, "ok/ok0.png", "--label", "dent", "--new-class", "--workspace", ws)
        assert added.exit_code == 0, added.output
        later = run("data", "correct", ro, "crack/crack0.png", "--label", "dent", "--workspace", ws)
        assert later.exit_code == 0 and "label crack -> dent" in later.output, later.output
    finally:
        for folder in (ro, ro / "ok", ro / "crack"):
            folder.chmod(0o755)


def test_the_image_may_be_named_by_any_path_to_it(tmp_path, monkeypatch):
    """``data issues`` prints paths from where it ran (``parts/ok/ok0.png``): they name the image too."""
    root = _data(tmp_path)
    monkeypatch.chdir(tmp_path)
    from_here = run("data", "correct", "parts", "parts/ok/ok0.png", "--label", "crack")
    assert from_here.exit_code == 0 and "ok/ok0.png: label ok -> crack" in from_here.output
    absolute = run("data", "correct", root, root / "crack" / "crack0.png", "--exclude")
    assert absolute.exit_code == 0 and "crack/crack0.png: exclude false -> true" in absolute.output
    elsewhere = tmp_path / "other.png"
    elsewhere.write_bytes((root / "ok" / "ok0.png").read_bytes())
    outside = run("data", "correct", "parts", elsewhere, "--label", "ok")
    assert outside.exit_code != 0 and "no such image in" in outside.output
    (root / "labels.csv").write_text("path,label\nok/ok0.png,ok\ngone.png,crack\n", encoding="utf-8")
    gone = run("data", "correct", root / "labels.csv", root / "gone.png", "--exclude")  # listed, not on disk
    assert gone.exit_code == 0 and "gone.png: exclude false -> true" in gone.output


def test_counts_out_of_range_are_refused_by_the_option_parser(tmp_path):
    root = _data(tmp_path)
    workers = run("data", "info", root, "--workers", "-1")  # it was an internal error from the thread pool
    assert workers.exit_code == 2 and "--workers" in workers.output and "internal error" not in workers.output
    top = run("data", "issues", root, "--top", "-1")  # it listed 2 rows of 3 and "... and 4 more"
    assert top.exit_code == 2 and "--top" in top.output


def test_splitting_data_that_has_splits_says_they_are_replaced(tmp_path):
    from inspekt.data.synth import write_dataset

    mvtec = write_dataset(tmp_path / "mv", n=40, size=32, seed=0, layout="mvtec").root
    done = run("data", "split", mvtec, "--out", tmp_path / "split.csv")
    assert done.exit_code == 0, done.output
    said = " ".join(done.output.split())
    assert "warning:" in said and "already has splits (train 6, test 34); they are replaced by a new one" in said
    fresh = run("data", "split", _data(tmp_path), "--out", tmp_path / "split2.csv")
    assert fresh.exit_code == 0 and "warning" not in fresh.output
    boxes = write_dataset(tmp_path / "boxes", n=24, size=48, seed=0, layout="boxes").root
    detect = run("data", "split", boxes, "--out", tmp_path / "split3.csv")  # a detection dataset (labels.csv)
    assert detect.exit_code == 0, detect.output
    info = json.loads(run("data", "info", tmp_path / "split3.csv", "--json").stdout)
    assert "detect" in info["tasks"] and set(info["counts"]) == {"train", "val", "test"}  # its boxes kept
