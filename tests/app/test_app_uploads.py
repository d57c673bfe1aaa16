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


def test_a_damaged_uploaded_bundle_is_refused_whole_at_upload(trained, tmp_path):
    """A bundle whose weights fail their checksum was accepted, and failed later at Grad-CAM under its
    internal upload path."""
    import zipfile

    from inspekt.bundle import copy_bundle, open_bundle

    good = copy_bundle(open_bundle(trained.bundle), tmp_path / "good.inspekt", archive=True)
    assert common._damage(good) is None
    data = bytearray(good.read_bytes())
    with zipfile.ZipFile(good) as archive:
        member = archive.getinfo("weights.safetensors")
    start = member.header_offset + 30 + len(member.filename) + len(member.extra)  # its data
    for offset in range(0, min(member.compress_size, 4000), 97):  # a CRC error, or zlib's own (deflated)
        broken = bytearray(data)
        broken[start + offset : start + offset + 16] = bytes(16)
        damaged = tmp_path / "damaged.inspekt"
        damaged.write_bytes(bytes(broken))
        problem = common._damage(damaged)  # never an exception (zlib.error was one): the page shows the message
        changed = broken != data
        assert (problem is not None and "weights.safetensors" in problem) if changed else problem is None, offset
