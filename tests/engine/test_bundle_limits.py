"""``.inspekt`` zips from untrusted hands, through `inspekt predict` in a subprocess: only the known
members are read, their stated sizes are checked before anything is inflated, and a zip bomb is
refused in one line with memory to spare."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from inspekt.bundle import open_bundle
from inspekt.errors import BundleError

MEASURE = (
    "import resource, subprocess, sys\n"
    "proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
    "print(proc.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024)\n"
    "print(proc.stderr.strip(), file=sys.stderr)\n"
)


def _zip(bundle: Path, out: Path, extra: dict[str, int] | None = None, replace: str | None = None) -> Path:
    """The bundle as a zip, plus members of N zero bytes each (written in 1 MB chunks: fast, little memory)."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for member in sorted(bundle.iterdir()):
            if member.name != replace:
                archive.write(member, member.name)
        for name, size in (extra or {}).items():
            with archive.open(name, "w", force_zip64=True) as handle:
                for _ in range(size // 2**20):
                    handle.write(bytes(2**20))
    return out


def _predict(bundle: Path, image: Path) -> tuple[int, int, str]:
    """Exit status, peak RSS in MB and stderr of `inspekt predict BUNDLE IMAGE`."""
    exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
    proc = subprocess.run(
        [sys.executable, "-c", MEASURE, exe, "predict", str(bundle), str(image), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    status, rss = proc.stdout.split()
    return int(status), int(rss), proc.stderr


@pytest.fixture(scope="module")
def image(synth_classes) -> Path:
    return next(p for p in sorted(synth_classes.rglob("*.png")))


@pytest.mark.slow
def test_unknown_members_are_never_read(trained, image, tmp_path):
    plain = _zip(trained.bundle, tmp_path / "plain.inspekt")
    padded = _zip(trained.bundle, tmp_path / "padded.inspekt", extra={"junk.bin": 400 * 2**20})
    assert padded.stat().st_size < 2 * 2**20  # 400 MB of zeros pack into a few hundred KB
    status, base_rss, _ = _predict(plain, image)
    padded_status, padded_rss, stderr = _predict(padded, image)
    assert status == 0 and padded_status == 0, stderr
    assert padded_rss < base_rss + 100, f"{padded_rss} MB with a 400 MB junk member vs {base_rss} MB without"


@pytest.mark.slow
def test_a_zip_bomb_member_is_refused_before_it_is_inflated(trained, image, tmp_path):
    bomb = _zip(trained.bundle, tmp_path / "bomb.inspekt", extra={"model.onnx": 400 * 2**20}, replace="model.onnx")
    status, rss, stderr = _predict(bomb, image)
    assert status == 2, stderr
    assert "model.onnx" in stderr and "zip bomb" in stderr and len(stderr.splitlines()) == 1
    assert rss < 400, f"peak RSS {rss} MB: the member was inflated"


def test_stated_sizes_over_the_limit_are_refused(trained, tmp_path, monkeypatch):
    bundle = _zip(trained.bundle, tmp_path / "model.inspekt")
    monkeypatch.setenv("INSPEKT_MAX_BUNDLE_MB", "0.01")  # 10 KB: less than the weights
    with pytest.raises(BundleError, match="INSPEKT_MAX_BUNDLE_MB"):
        open_bundle(bundle)
    monkeypatch.setenv("INSPEKT_MAX_BUNDLE_MB", "lots")
    with pytest.raises(Exception, match="INSPEKT_MAX_BUNDLE_MB='lots'"):
        open_bundle(bundle)


def test_a_huge_card_is_refused_and_members_are_read_when_asked(trained, tmp_path):
    bundle = _zip(trained.bundle, tmp_path / "model.inspekt")
    opened = open_bundle(bundle)
    assert opened.read("model.onnx") == (trained.bundle / "model.onnx").read_bytes()
    assert not any(isinstance(v, bytes) and len(v) > 100_000 for v in vars(opened).values())  # nothing large kept
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "card.json").write_text('{"schema": "inspekt.card/v2", "pad": "' + "x" * 2**21 + '"}')
    with pytest.raises(BundleError, match="card.json is 2.0 MB"):
        open_bundle(folder)


def test_a_deeply_nested_card_is_one_line_not_a_recursion_error(trained, image, tmp_path):
    folder = tmp_path / "nested"
    shutil.copytree(trained.bundle, folder)
    (folder / "card.json").write_text('{"schema": "inspekt.card/v2", "params": ' + "[" * 100_000 + "]" * 100_000 + "}")
    status, _, stderr = _predict(folder, image)
    assert status == 2 and "nested more than 32 levels" in stderr and "card.json" in stderr
    assert len(stderr.strip().splitlines()) == 1, stderr
