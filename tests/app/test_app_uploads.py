"""Uploaded bundles are kept on disk for the model picker; the workspace keeps only the newest few."""

from __future__ import annotations

import os

import pytest

pytest.importorskip("streamlit")

from inspekt.app import common


def test_only_the_newest_uploaded_bundles_are_kept(tmp_path):
    folder = tmp_path / "uploads" / "models"
    folder.mkdir(parents=True)
    for i in range(common.MAX_UPLOADED_BUNDLES + 3):
        path = folder / f"{i:02d}-model.inspekt"
        path.write_bytes(b"x")
        os.utime(path, (1_000_000 + i, 1_000_000 + i))
    (folder / "notes.txt").write_text("not an upload")
    common._keep_newest(folder, common.MAX_UPLOADED_BUNDLES)
    kept = sorted(p.name for p in folder.glob("*.inspekt"))
    assert kept == [f"{i:02d}-model.inspekt" for i in range(3, common.MAX_UPLOADED_BUNDLES + 3)]
    assert (folder / "notes.txt").exists()
