"""Corrections: a new version of a dataset beside it, read back by open_dataset."""

from __future__ import annotations

import csv
import os
import stat

import numpy as np
import pytest

from conftest import png_bytes
from inspekt.data import open_dataset
from inspekt.data.corrections import FILE, FOLDER, Corrections, locate
from inspekt.errors import DatasetError


def _classes(tmp_path):
    """Two classes of three 8x6 images each (grey levels tell them apart)."""
    root = tmp_path / "parts"
    for label, level in (("ok", 40), ("crack", 200)):
        (root / label).mkdir(parents=True)
        for k in range(3):
            (root / label / f"{label}{k}.png").write_bytes(png_bytes(np.full((6, 8), level + k, np.uint8)))
    return root


def _rows(path):
    with path.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _sample(dataset, name):
    return next(s for s in dataset.samples if s.path.name == name)


def test_a_relabel_is_read_back_and_the_original_is_untouched(tmp_path):
    root = _classes(tmp_path)
    before = open_dataset(root)
    Corrections(root).set_label(_sample(before, "ok1.png"), "crack", who="ana", note="visible crack")
    after = open_dataset(root)
    assert _sample(after, "ok1.png").label == "crack"
    assert after.counts() == {"all": {"crack": 4, "ok": 2}}
    assert after.fingerprint() != before.fingerprint()
    assert open_dataset(root, original=True).fingerprint() == before.fingerprint()
    assert (root / "ok" / "ok1.png").is_file()  # nothing moved
    [row] = _rows(root / FOLDER / FILE)
    assert (row["path"], row["field"], row["old"], row["new"], row["action"]) == (
        "ok/ok1.png",
        "label",
        "ok",
        "crack",
        "set",
    )
    assert row["who"] == "ana" and row["note"] == "visible crack" and row["when"].endswith("+00:00")


def test_the_corrections_folder_is_not_a_class_or_an_image(tmp_path):
    root = _classes(tmp_path)
    dataset = open_dataset(root)
    Corrections(root).set_mask(_sample(dataset, "crack0.png"), np.eye(6, 8))
    again = open_dataset(root)
    assert again.classes == ("crack", "ok") and len(again) == 6
    assert open_dataset(root, original=True).classes == ("crack", "ok")


def test_a_corrected_mask_is_a_new_file_and_each_version_is_kept(tmp_path):
    root = _classes(tmp_path)
    sample = _sample(open_dataset(root), "crack0.png")
    first = np.zeros((6, 8), np.uint8)
    first[1:3, 2:5] = 1
    fixes = Corrections(root)
    fixes.set_mask(sample, first)
    fixes.set_mask(_sample(open_dataset(root), "crack0.png"), 1 - first)
    masks = sorted((root / FOLDER / "masks" / "crack").glob("*.png"))
    assert [m.name for m in masks] == ["crack0.v1.png", "crack0.v2.png"]
    read = _sample(open_dataset(root), "crack0.png").mask
    assert read == masks[1]
    from inspekt.io import load_image

    assert ((load_image(read, mode="L") > 0) == (1 - first).astype(bool)).all()
    rows = _rows(root / FOLDER / FILE)
    assert rows[1]["old"] == rows[0]["new"] == f"{FOLDER}/masks/crack/crack0.v1.png"


def test_a_mask_of_the_wrong_size_is_refused_with_both_sizes(tmp_path):
    root = _classes(tmp_path)
    with pytest.raises(DatasetError, match=r"\(4, 4\).*6x8"):
        Corrections(root).set_mask(_sample(open_dataset(root), "ok0.png"), np.ones((4, 4)))


def test_recording_a_value_twice_writes_one_row(tmp_path):
    root = _classes(tmp_path)
    fixes = Corrections(root)
    sample = _sample(open_dataset(root), "ok0.png")
    assert fixes.exclude(sample) is not None
    assert fixes.exclude(sample) is None
    assert len(_rows(fixes.csv_path)) == 1
    assert "ok0.png" not in [s.path.name for s in open_dataset(root).samples]


def test_undo_walks_back_one_fix_at_a_time(tmp_path):
    root = _classes(tmp_path)
    fixes = Corrections(root)
    sample = _sample(open_dataset(root), "ok2.png")
    fixes.set_label(sample, "crack")
    fixes.set_label(sample, "dent")
    fixes.undo(sample, "label")
    assert _sample(open_dataset(root), "ok2.png").label == "crack"
    fixes.undo(sample, "label")
    assert _sample(open_dataset(root), "ok2.png").label == "ok"
    assert open_dataset(root).fingerprint() == open_dataset(root, original=True).fingerprint()
    with pytest.raises(DatasetError, match="no label correction to undo"):
        fixes.undo(sample, "label")
    undo_rows = [r for r in _rows(fixes.csv_path) if r["action"] == "undo"]
    assert [(r["old"], r["new"]) for r in undo_rows] == [("dent", "crack"), ("crack", "ok")]


def test_an_excluded_image_can_be_included_again(tmp_path):
    root = _classes(tmp_path)
    fixes = Corrections(root)
    sample = _sample(open_dataset(root), "crack1.png")
    fixes.exclude(sample)
    fixes.exclude(sample, excluded=False)
    assert len(open_dataset(root)) == 6


def test_a_csv_dataset_keeps_its_corrections_in_its_own_folder(tmp_path):
    root = _classes(tmp_path)
    table = root / "labels.csv"
    table.write_text("path,label\nok/ok0.png,ok\ncrack/crack0.png,crack\n", encoding="utf-8")
    Corrections(table).set_label(_sample(open_dataset(table), "ok0.png"), "crack")
    assert (root / FOLDER / "labels.csv" / FILE).is_file()
    assert open_dataset(table).counts() == {"all": {"crack": 2}}
    assert open_dataset(root).counts() == {"all": {"crack": 3, "ok": 3}}  # the folder dataset is another one


def test_a_read_only_dataset_keeps_its_corrections_in_the_workspace(tmp_path):
    """Also as root, who could write there: the folder's mode says nobody should."""
    root = _classes(tmp_path)
    workspace = tmp_path / "ws"
    for folder in (root, root / "ok", root / "crack"):
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        with pytest.raises(DatasetError, match="read-only and no workspace"):
            Corrections(root).set_label(_sample(open_dataset(root), "ok0.png"), "crack")
        fixes = Corrections(root, workspace)
        fixes.set_label(_sample(open_dataset(root), "ok0.png"), "crack")
        assert fixes.folder.parent == workspace / "corrections"
        assert (fixes.folder / "dataset.txt").read_text().strip() == str(root)
        os.environ["INSPEKT_WORKSPACE"] = str(workspace)
        assert _sample(open_dataset(root), "ok0.png").label == "crack"
    finally:
        os.environ.pop("INSPEKT_WORKSPACE", None)
        for folder in (root, root / "ok", root / "crack"):
            folder.chmod(stat.S_IRWXU)


def test_a_workspace_is_used_when_the_dataset_folder_cannot_be_written(tmp_path, monkeypatch):
    """The same choice through ``locate`` and the INSPEKT_WORKSPACE variable."""
    root = _classes(tmp_path)
    root.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert locate(root) is None
        assert locate(root, tmp_path / "ws").parent == tmp_path / "ws" / "corrections"
        monkeypatch.setenv("INSPEKT_WORKSPACE", str(tmp_path / "ws"))
        Corrections(root).set_label(_sample(open_dataset(root), "ok0.png"), "crack")
        assert not (root / FOLDER).exists()
        assert _sample(open_dataset(root), "ok0.png").label == "crack"
    finally:
        root.chmod(stat.S_IRWXU)


def test_a_broken_corrections_file_names_the_line_and_the_fix(tmp_path):
    root = _classes(tmp_path)
    (root / FOLDER).mkdir()
    (root / FOLDER / FILE).write_text(
        "path,field,old,new,action,who,when,note\nok/ok0.png,colour,,red,set,a,b,\n", encoding="utf-8"
    )
    with pytest.raises(DatasetError, match=r"corrections.csv:2: field 'colour'.*fix or delete the row"):
        open_dataset(root)


def test_corrections_of_images_no_longer_in_the_dataset_are_reported(tmp_path):
    root = _classes(tmp_path)
    Corrections(root).set_label(_sample(open_dataset(root), "ok0.png"), "crack")
    (root / "ok" / "ok0.png").unlink()
    with pytest.warns(UserWarning, match="1 corrected image"):
        assert len(open_dataset(root)) == 5


def test_a_remote_dataset_cannot_be_corrected():
    with pytest.raises(DatasetError, match="local datasets only"):
        Corrections("s3://bucket/parts")
