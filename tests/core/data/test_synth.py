"""Tests of inspekt.data.synth: synthetic surfaces, their masks, and the dataset writer."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from inspekt.data.surfaces import SynthSample, make_surface
from inspekt.data.synth import CLASSES, LAYOUTS, SynthSummary, write_dataset
from inspekt.errors import DatasetError

DEFECTS = ("pore", "lop", "scratch")
SEEDS = range(12)


def _grey(image: np.ndarray) -> np.ndarray:
    """Image as float grey levels (colour averaged over channels)."""
    return image.astype(np.float64) if image.ndim == 2 else image.astype(np.float64).mean(-1)


def _ring(mask: np.ndarray) -> np.ndarray:
    """Pixels 2-4 px outside a mask: the defect's immediate surroundings."""
    outer = cv2.dilate(mask, np.ones((9, 9), np.uint8)) > 0
    inner = cv2.dilate(mask, np.ones((5, 5), np.uint8)) > 0
    return outer & ~inner


def _axis_ratio(mask: np.ndarray) -> float:
    """Ratio of the principal axes (std along the long axis / std across it)."""
    ys, xs = np.nonzero(mask)
    small, large = np.linalg.eigvalsh(np.cov(np.stack([xs, ys]).astype(float)))
    return float(np.sqrt(large / max(small, 1e-9)))


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im)


def _pngs(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*.png")}


# --------------------------------------------------------------------------- make_surface


@pytest.mark.parametrize("label", CLASSES)
def test_same_seed_same_bytes_and_other_seed_differs(label: str) -> None:
    a = make_surface(label, size=64, seed=7)
    b = make_surface(label, size=64, seed=7)
    c = make_surface(label, size=64, seed=8, color=a.image.ndim == 3)
    assert a.image.tobytes() == b.image.tobytes()
    assert a.mask.tobytes() == b.mask.tobytes()
    assert a.image.shape == c.image.shape
    assert np.abs(a.image.astype(int) - c.image.astype(int)).mean() > 2.0


@pytest.mark.parametrize("size", [32, 96])
def test_shapes_and_dtypes_grey_and_colour(size: int) -> None:
    grey = make_surface("pore", size=size, seed=1, color=False)
    colour = make_surface("pore", size=size, seed=1, color=True)
    assert isinstance(grey, SynthSample) and grey.label == "pore"
    assert grey.image.shape == (size, size) and grey.image.dtype == np.uint8
    assert colour.image.shape == (size, size, 3) and colour.image.dtype == np.uint8
    for sample in (grey, colour):
        assert sample.mask.shape == (size, size) and sample.mask.dtype == np.uint8
        assert set(np.unique(sample.mask)) == {0, 255}
    # A tint, not three copies of one grey: channel means differ.
    means = colour.image.reshape(-1, 3).mean(0)
    assert means.max() - means.min() > 3.0


def test_color_none_lets_the_seed_choose_about_half_each() -> None:
    ndims = [make_surface("ok", size=32, seed=s).image.ndim for s in range(40)]
    assert 10 <= ndims.count(3) <= 30 and ndims.count(2) + ndims.count(3) == 40


def test_images_are_textured_not_flat() -> None:
    for seed in SEEDS:
        image = make_surface("ok", seed=seed, color=False).image.astype(float)
        assert 80 < image.mean() < 170
        assert image.std() > 3.0  # texture + lighting, clearly not a flat fill


def test_ok_masks_are_all_zero() -> None:
    for seed in SEEDS:
        assert not make_surface("ok", size=64, seed=seed).mask.any()


def test_pore_masks_are_small_round_blobs() -> None:
    size = 128
    for seed in SEEDS:
        mask = make_surface("pore", size=size, seed=seed).mask
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        assert 1 <= n - 1 <= 4  # background + 1..4 pores (touching pores may merge)
        for area, w, h in zip(stats[1:, cv2.CC_STAT_AREA], stats[1:, 2], stats[1:, 3]):
            # Radius 2-6% of 128 px (~2.5-7.7 px): a few px^2 up to one ~8 px disc each.
            assert 8 <= area <= 4 * np.pi * (0.06 * size + 1) ** 2
            assert max(w, h) <= 3 * min(w, h)


def test_lop_mask_is_one_long_thin_seam() -> None:
    size = 128
    for seed in SEEDS:
        mask = make_surface("lop", size=size, seed=seed).mask
        assert cv2.connectedComponents(mask)[0] - 1 == 1
        assert _axis_ratio(mask) > 8.0
        ys, xs = np.nonzero(mask)
        length = np.hypot(np.ptp(xs), np.ptp(ys))
        assert 0.45 * size <= length <= 0.95 * size
        width = np.count_nonzero(mask) / length
        assert 1.5 <= width <= 5.0


def test_scratch_masks_are_thin_lines() -> None:
    for seed in SEEDS:
        mask = make_surface("scratch", size=128, seed=seed).mask
        n = cv2.connectedComponents(mask)[0] - 1
        assert 1 <= n <= 2
        # A 1-2 px line: eroding with a 3x3 cross leaves (almost) nothing.
        eroded = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)))
        assert np.count_nonzero(eroded) <= 0.5 * np.count_nonzero(mask)
        assert np.count_nonzero(mask) >= 0.3 * 128 * 0.8


@pytest.mark.parametrize("color", [False, True])
@pytest.mark.parametrize(("label", "sign"), [("pore", -1), ("lop", -1), ("scratch", 1)])
def test_defect_is_visible_against_its_surroundings(label: str, sign: int, color: bool) -> None:
    for seed in SEEDS:
        sample = make_surface(label, size=128, seed=seed, color=color)
        grey = _grey(sample.image)
        inside = grey[sample.mask > 0].mean()
        ring = grey[_ring(sample.mask)].mean()
        assert sign * (inside - ring) > 10.0, (label, seed, inside, ring)


@pytest.mark.parametrize("label", DEFECTS)
def test_mask_is_exactly_where_the_defect_changed_the_image(label: str) -> None:
    # The same seed renders the same surface with and without the defect, so their
    # difference is the defect alone: every mask pixel changed clearly, nothing far away.
    for seed in SEEDS:
        defect = make_surface(label, size=96, seed=seed, color=False)
        clean = make_surface("ok", size=96, seed=seed, color=False)
        change = np.abs(defect.image.astype(int) - clean.image.astype(int))
        near = cv2.dilate(defect.mask, np.ones((9, 9), np.uint8)) > 0
        assert change[defect.mask > 0].min() >= 10
        assert change[~near].max() <= 3


def test_defects_vary_with_the_seed() -> None:
    for label in DEFECTS:
        masks = [make_surface(label, size=64, seed=s).mask > 0 for s in range(6)]
        centroids = {tuple(np.round(np.argwhere(m).mean(0) / 4)) for m in masks}
        areas = {int(m.sum()) for m in masks}
        assert len(centroids) >= 4 and len(areas) >= 4, label


def test_make_surface_errors_say_the_fix() -> None:
    with pytest.raises(DatasetError, match='Did you mean "pore"'):
        make_surface("pores")
    with pytest.raises(DatasetError, match="from 32 to 4096"):
        make_surface("ok", size=16)


# --------------------------------------------------------------------------- write_dataset


def test_classes_layout_tree_counts_and_readme(tmp_path: Path) -> None:
    out = tmp_path / "ds"
    summary = write_dataset(out, n=10, size=32, seed=3, color="grey")
    assert isinstance(summary, SynthSummary)
    assert summary.root == out and summary.layout == "classes" and summary.n_images == 10
    assert summary.counts == {"ok": 3, "pore": 3, "lop": 2, "scratch": 2}
    assert summary.seconds > 0
    files = _pngs(out)
    assert len(files) == 10
    assert {"ok/ok_0002.png", "pore/pore_0000.png", "scratch/scratch_0001.png"} <= files
    assert "scratch/scratch_0002.png" not in files
    assert not (out / "masks").exists()
    image = _read(out / "lop" / "lop_0001.png")
    assert image.shape == (32, 32) and image.dtype == np.uint8
    readme = (out / "README.txt").read_text()
    assert "inspekt" in readme and "seed=3" in readme and len(readme.splitlines()) <= 5


def test_segmentation_layout_mirrors_images_and_masks(tmp_path: Path) -> None:
    out = tmp_path / "seg"
    summary = write_dataset(out, n=8, size=32, layout="segmentation")
    assert summary.counts == {c: 2 for c in CLASSES}
    images = {p.removeprefix("images/") for p in _pngs(out) if p.startswith("images/")}
    masks = {p.removeprefix("masks/") for p in _pngs(out) if p.startswith("masks/")}
    assert len(images) == 8 and images == masks
    for rel in masks:
        mask = _read(out / "masks" / rel)
        assert mask.ndim == 2 and set(np.unique(mask)) <= {0, 255}
        assert mask.any() == (not rel.startswith("ok/")), rel


def test_mvtec_layout_splits_good_and_has_ground_truth_for_defects(tmp_path: Path) -> None:
    out = tmp_path / "mv"
    summary = write_dataset(out, n=20, size=32, layout="mvtec")
    assert summary.counts == {"train/good": 3, "test/good": 2, "test/pore": 5, "test/lop": 5, "test/scratch": 5}
    files = _pngs(out)
    assert {"train/good/ok_0000.png", "train/good/ok_0002.png", "test/good/ok_0004.png"} <= files
    tests = {p for p in files if p.startswith("test/") and not p.startswith("test/good/")}
    truths = {p for p in files if p.startswith("ground_truth/")}
    expected = {"ground_truth/" + p.removeprefix("test/").removesuffix(".png") + "_mask.png" for p in tests}
    assert len(tests) == 15 and truths == expected
    assert not (out / "ground_truth" / "good").exists()
    for rel in truths:
        mask = _read(out / rel)
        assert mask.ndim == 2 and set(np.unique(mask)) == {0, 255}


def test_written_dataset_is_reproducible_and_images_do_not_depend_on_n(tmp_path: Path) -> None:
    write_dataset(tmp_path / "a", n=8, size=32, seed=5)
    write_dataset(tmp_path / "b", n=8, size=32, seed=5)
    write_dataset(tmp_path / "c", n=16, size=32, seed=5)
    write_dataset(tmp_path / "d", n=8, size=32, seed=6)
    rel = Path("lop") / "lop_0001.png"
    a, b, c, d = (_read(tmp_path / x / rel) for x in "abcd")
    assert np.array_equal(a, b) and np.array_equal(a, c)
    assert a.shape != d.shape or not np.array_equal(a, d)


@pytest.mark.parametrize(("color", "ndims"), [("grey", {2}), ("color", {3}), ("mixed", {2, 3})])
def test_color_modes(tmp_path: Path, color: str, ndims: set[int]) -> None:
    write_dataset(tmp_path, n=24, size=32, color=color)
    found = {_read(p).ndim for p in tmp_path.rglob("*.png")}
    assert found == ndims


@pytest.mark.parametrize(
    ("kwargs", "fix"),
    [
        ({"kind": "surfce"}, 'Did you mean "surface"'),
        ({"layout": "mvtech"}, 'Did you mean "mvtec"'),
        ({"color": "gray"}, 'Did you mean "grey"'),
        ({"n": 0}, "n from 1 to"),
        ({"size": 16}, "from 32 to 4096"),
    ],
)
def test_bad_arguments_raise_with_the_fix(tmp_path: Path, kwargs: dict, fix: str) -> None:
    with pytest.raises(DatasetError, match=fix):
        write_dataset(tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_non_empty_folder_is_refused_unless_overwrite(tmp_path: Path) -> None:
    write_dataset(tmp_path, n=12, size=32)
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(DatasetError, match="not empty: choose another folder or delete it"):
        write_dataset(tmp_path, n=4, size=32)
    summary = write_dataset(tmp_path, n=4, size=32, overwrite=True)
    assert summary.counts == {c: 1 for c in CLASSES}
    assert len(_pngs(tmp_path)) == 4  # the 12 older images are gone, not mixed in
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_layouts_constant_lists_every_layout(tmp_path: Path) -> None:
    for layout in LAYOUTS:
        summary = write_dataset(tmp_path / layout, n=4, size=32, layout=layout)
        assert summary.layout == layout and sum(summary.counts.values()) == 4


def test_progress_is_called_once_per_image(tmp_path):
    seen = []
    write_dataset(tmp_path / "p", n=6, size=32, progress=seen.append)
    assert seen == [1, 2, 3, 4, 5, 6]


def test_overwrite_refuses_a_folder_inspekt_did_not_write(tmp_path):
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "mine.png").write_bytes(b"user data")
    with pytest.raises(DatasetError, match="did not generate"):
        write_dataset(tmp_path, n=4, size=32, overwrite=True)
    assert (tmp_path / "ok" / "mine.png").read_bytes() == b"user data"
