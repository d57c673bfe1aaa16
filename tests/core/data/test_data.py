"""Dataset layouts, `describe` (data info) and stratified splits."""

import csv

import numpy as np
import pytest

from conftest import shared_dataset
from inspekt.data import open_dataset
from inspekt.data.info import describe
from inspekt.data.split import split_dataset, write_split_csv
from inspekt.errors import DatasetError
from inspekt.io import save_image
from inspekt.tasks import tasks_for


def img(path, value=0, shape=(8, 8)):
    """Write a small grey PNG/JPEG whose content is set by ``value`` (distinct values: distinct bytes)."""
    return save_image(path, np.full(shape, value, np.uint8))


def tree(root, files):
    for i, name in enumerate(files):
        img(root / name, value=i)
    return root


def test_class_folders(tmp_path):
    ds = open_dataset(tree(tmp_path, ["cat/a.png", "cat/b.png", "dog/c.jpg", "dog/sub/d.png"]))
    assert ds.layout == "classes" and ds.classes == ("cat", "dog") and len(ds) == 4
    assert ds.counts() == {"all": {"cat": 2, "dog": 2}} and tasks_for(ds) == ("classify",)


def test_class_folders_under_splits(tmp_path):
    ds = open_dataset(tree(tmp_path, ["train/ok/a.png", "train/nok/b.png", "Val/ok/c.png", "test/nok/d.png"]))
    assert ds.splits == ("train", "val", "test")
    assert ds.counts()["val"] == {"ok": 1}
    assert set(tasks_for(ds)) == {"classify", "anomaly"} and ds.normal_class == "ok"


def test_mvtec_with_ground_truth(tmp_path):
    root = tree(
        tmp_path,
        [
            "train/good/0.png",
            "train/good/1.png",
            "test/good/2.png",
            "test/crack/3.png",
            "test/crack/4.png",
            "ground_truth/crack/3_mask.png",
        ],
    )
    ds = open_dataset(root)
    assert ds.layout == "mvtec" and ds.classes == ("crack", "good")
    crack = [s for s in ds.samples if s.label == "crack"][0]
    assert crack.mask == root / "ground_truth/crack/3_mask.png" and crack.split == "test"
    assert set(tasks_for(ds)) == {"classify", "segment", "anomaly", "detect"}  # masks are boxes too
    # good/ images never have masks: only the defect image without one is listed (it was buried among them)
    assert describe(ds).masks_missing == [str(root / "test/crack/4.png")]


def test_segmentation_mirrored_any_extension(tmp_path):
    root = tree(
        tmp_path,
        ["images/Crack/a.jpg", "images/Crack/b.jpg", "images/Free/c.jpg", "masks/Crack/a.png", "masks/Free/c.png"],
    )
    ds = open_dataset(root)
    assert ds.layout == "segmentation" and ds.classes == ("Crack", "Free") and ds.n_masks == 2
    info = describe(ds)
    assert info.masks_missing == [str(root / "images/Crack/b.jpg")]
    tree(tmp_path, ["masks/Crack/typo_a.png"])  # a mask no image takes (a renamed file): listed, not silent
    (problem,) = open_dataset(root).problems
    assert problem.path == str(root / "masks/Crack/typo_a.png") and "no image of this name" in problem.reason


def test_masks_beside_images(tmp_path):
    ds = open_dataset(tree(tmp_path, ["a.png", "a_mask.png", "b.png", "b_mask.png"]))
    assert ds.layout == "segmentation" and len(ds) == 2 and ds.n_masks == 2 and ds.classes == ()


def test_csv_layout(tmp_path):
    tree(tmp_path, ["imgs/a.png", "imgs/b.png", "m/a.png"])
    (tmp_path / "list.csv").write_text("path,label,mask,split\nimgs/a.png,ok,m/a.png,train\nimgs/b.png,nok,,valid\n")
    ds = open_dataset(tmp_path / "list.csv")
    assert ds.layout == "csv" and [s.split for s in ds.samples] == ["train", "val"]
    assert ds.samples[0].mask == tmp_path / "m/a.png" and ds.samples[1].mask is None


@pytest.mark.parametrize("files", [["images/all/a.png", "images/all/b.png"], ["a.png", "b.png"]])
def test_a_folder_whose_folders_name_no_classes_is_read_from_its_labels_csv(tmp_path, files):
    # images/<one folder>/ + labels.csv (what `data synth --layout boxes` writes) read as one class "images"
    # before, and flat images + labels.csv were refused as unlabelled
    tree(tmp_path, files)
    (tmp_path / "labels.csv").write_text(f"path,label\n{files[0]},ok\n{files[1]},pore\n")
    ds = open_dataset(tmp_path)
    assert ds.layout == "csv" and ds.classes == ("ok", "pore") and len(ds) == 2


def test_class_folders_win_over_a_labels_csv_beside_them(tmp_path):
    tree(tmp_path, ["cat/a.png", "dog/b.png"])
    (tmp_path / "labels.csv").write_text("path,label\ncat/a.png,x\ndog/b.png,x\n")
    ds = open_dataset(tmp_path)
    assert ds.layout == "classes" and ds.classes == ("cat", "dog")


@pytest.mark.parametrize("table", ["path,inspector\ngood/0.png,ann\n", "path,label\ngood/0.png,good\n"])
def test_a_one_class_folder_keeps_its_images_beside_a_csv_that_is_not_its_annotation(tmp_path, table):
    """Notes without a label column, or a CSV listing fewer images, must not replace a good/ folder."""
    tree(tmp_path, [f"good/{i}.png" for i in range(4)])
    (tmp_path / "labels.csv").write_text(table)
    ds = open_dataset(tmp_path)
    assert ds.layout == "classes" and ds.classes == ("good",) and len(ds) == 4


@pytest.mark.parametrize(
    "content, message",
    [
        ("name,kind\na.png,x\n", "no path column.*found columns: name, kind"),
        ("path,label,split\na.png,x,holdout\n", r"list.csv:2: unknown split 'holdout'"),
        ("path,label\n,x\n", "list.csv:2: empty 'path'"),
        ("path,lable\na.png,x\n", "list.csv: no label/mask/boxes column, but a 'lable' column. Did you mean \"label\""),
        ("image,labels,notes\na.png,x,y\n", "but a 'labels' column. Did you mean \"label\""),
        # a malformed box is refused, never dropped (the image would train as one without defects)
        ('path,boxes\na.png,"[[""pore"",10,10,20]]"\n', r'list.csv:2: box \["pore", 10, 10, 20\] is not \[label, x0'),
        ('path,boxes\na.png,"[{""a"": 1}]"\n', r"list.csv:2: box \{.a.: 1\} is not \[label, x0, y0, x1, y1\]"),
        (
            'path,boxes\na.png,"[[""pore"",10,10,""x"",20]]"\n',
            "list.csv:2: box .* has a coordinate that is not a number",
        ),
        ('path,boxes\na.png,"[[""pore"",30,40,8,6]]"\n', r"list.csv:2: box .* has no area .*x1 = x \+ width"),
        ('path,boxes\na.png,"{""pore"": 1}"\n', "list.csv:2: boxes .* is not JSON"),
        ('path,boxes\na.png,"[[""pore"",1,2,3\n', "list.csv:2: boxes .* is not JSON"),
    ],
)
def test_bad_csv(tmp_path, content, message):
    (tmp_path / "list.csv").write_text(content)
    with pytest.raises(DatasetError, match=message):
        open_dataset(tmp_path / "list.csv")


def test_csv_columns_inspekt_does_not_read_are_kept_when_not_a_misspelling(tmp_path):
    tree(tmp_path, ["a.png", "b.png"])
    (tmp_path / "list.csv").write_text("image,label,width,mask_sha256,source\na.png,ok,8,,x\nb.png,nok,8,,y\n")
    assert [s.label for s in open_dataset(tmp_path / "list.csv").samples] == ["ok", "nok"]
    for extra in ("notes", "shift", "task", "labels", "mask_path", "true_label", "bbox", "splits", "label.1"):
        (tmp_path / "list.csv").write_text(f"path,label,{extra}\na.png,ok,x\nb.png,nok,y\n")
        assert len(open_dataset(tmp_path / "list.csv")) == 2, extra  # metadata beside a label column
    (tmp_path / "list.csv").write_text("path,note\na.png,x\nb.png,y\n")  # paths only (e.g. to predict)
    assert [s.label for s in open_dataset(tmp_path / "list.csv").samples] == [None, None]


def test_loose_images_beside_class_folders_is_ambiguous(tmp_path):
    with pytest.raises(DatasetError, match="ambiguous layout: 1 images lie directly"):
        open_dataset(tree(tmp_path, ["x.png", "cat/a.png"]))


def test_split_folders_beside_class_folders_is_ambiguous(tmp_path):
    with pytest.raises(DatasetError, match=r"ambiguous layout: split folders \(train\) beside other folders \(cat\)"):
        open_dataset(tree(tmp_path, ["train/cat/a.png", "cat/b.png"]))


@pytest.mark.parametrize(
    "files, message",
    [
        ([], "no images found.*expected one of"),
        (["a.png", "b.png"], "found 2 images but no class folders or masks"),
    ],
)
def test_empty_or_unlabelled(tmp_path, files, message):
    with pytest.raises(DatasetError, match=message):
        open_dataset(tree(tmp_path, files))


def test_missing_path_and_image_given(tmp_path):
    with pytest.raises(DatasetError, match="no such file or folder"):
        open_dataset(tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"is one \.png file, not a dataset"):
        open_dataset(img(tmp_path / "a.png"))


def test_describe_finds_corrupt_files_duplicates_and_leakage(tmp_path):
    img(tmp_path / "train/ok/a.png", 1)
    img(tmp_path / "train/ok/b.png", 2)
    img(tmp_path / "test/ok/a_copy.png", 1)  # same bytes as train/ok/a.png: leakage
    img(tmp_path / "train/nok/c.png", 3, shape=(4, 6))
    (tmp_path / "train/nok/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n\0\0")
    info = describe(open_dataset(tmp_path))
    assert info.n_images == 4 and [c.path for c in info.corrupt] == [str(tmp_path / "train/nok/broken.png")]
    assert info.counts == {"train": {"nok": 1, "ok": 2}, "test": {"ok": 1}}  # readable images only
    assert len(info.duplicates) == 1 and len(info.cross_split_duplicates) == 1
    assert info.label_conflicts == []  # the copy has the same label
    img(tmp_path / "train/nok/b_again.png", 2)  # train/ok/b.png filed under another class
    conflicts = describe(open_dataset(tmp_path)).label_conflicts
    assert conflicts == [[str(tmp_path / "train/nok/b_again.png"), str(tmp_path / "train/ok/b.png")]]
    assert info.sizes.width_min == 6 and info.sizes.width_max == 8 and info.sizes.height_min == 4


def test_describe_reports_mask_size_mismatch(tmp_path):
    img(tmp_path / "images/a.png", shape=(8, 8))
    img(tmp_path / "masks/a.png", shape=(8, 9))
    info = describe(open_dataset(tmp_path))
    assert info.mask_problems[0].reason == "mask is 9x8 but its image is 8x8"


def _labelled(tmp_path, n_per_class):
    files = [f"{c}/{i}.png" for c, n in n_per_class.items() for i in range(n)]
    return open_dataset(tree(tmp_path, files))


def test_split_is_stratified_and_deterministic(tmp_path):
    ds = _labelled(tmp_path, {"a": 50, "b": 10})
    first, again = split_dataset(ds, val=0.2, test=0.2, seed=0), split_dataset(ds, val=0.2, test=0.2, seed=0)
    assert first == again
    counts = first.counts()
    assert counts["test"] == {"a": 10, "b": 2} and counts["val"] == {"a": 10, "b": 2}
    assert split_dataset(ds, seed=1) != first


def test_split_keeps_duplicates_together(tmp_path):
    for i in range(20):
        img(tmp_path / f"a/{i}.png", value=i % 5)  # every image has 3 byte-identical copies
    ds = split_dataset(open_dataset(tmp_path), val=0.2, test=0.2)
    splits_of = {}
    for s in ds.samples:
        splits_of.setdefault(int(s.path.stem) % 5, set()).add(s.split)
    assert all(len(v) == 1 for v in splits_of.values())


def test_split_csv_round_trip(tmp_path):
    ds = split_dataset(_labelled(tmp_path / "d", {"a": 6, "b": 6}), val=0.25, test=0.25)
    out = write_split_csv(ds, tmp_path / "out" / "split.csv")
    rows = list(csv.DictReader(out.open()))
    assert rows[0]["path"].startswith("../d/") and {r["split"] for r in rows} == {"train", "val", "test"}
    assert open_dataset(out).counts() == ds.counts()


def test_a_split_of_a_detection_dataset_keeps_its_boxes(tmp_path):
    from inspekt.data.synth import write_dataset

    source = write_dataset(tmp_path / "boxes", n=24, size=48, seed=0, layout="boxes")
    ds = open_dataset(source.root)
    assert any(s.boxes for s in ds.samples) and any(s.boxes == () for s in ds.samples)  # boxes, and "none here"
    out = write_split_csv(split_dataset(ds, val=0.25, test=0.25), tmp_path / "split.csv")
    again = open_dataset(out)
    assert [s.boxes for s in again.samples] == [s.boxes for s in ds.samples]
    assert "detect" in tasks_for(again) and {s.split for s in again.samples} == {"train", "val", "test"}
    assert write_split_csv(again, out)  # its own output, with the boxes column, may be replaced
    from inspekt.data.formats.common import Annotations
    from inspekt.data.formats.export import write_csv_dataset

    found = Annotations("coco", tmp_path, tuple(ds.samples), (), ())
    imported = write_csv_dataset(found, tmp_path / "imported")  # the labels.csv of `data import`
    with pytest.raises(DatasetError, match="is not a split CSV written by inspekt"):
        write_split_csv(again, imported)


def test_split_rejects_bad_fractions(tmp_path):
    with pytest.raises(DatasetError, match="sum to less than 1"):
        split_dataset(_labelled(tmp_path, {"a": 2}), val=0.6, test=0.5)


@pytest.mark.slow
@pytest.mark.datasets
def test_magnetic_tile():
    ds = open_dataset(shared_dataset("magnetic_tile"))
    info = describe(ds, tasks=tasks_for(ds))
    assert info.layout == "segmentation" and info.n_images == 1344 and len(info.classes) == 6
    assert info.counts["all"]["Free"] == 952 and info.masks_found == 1344 and not info.masks_missing
    assert not info.corrupt and not info.mask_problems
    assert set(info.tasks) == {"classify", "segment", "anomaly", "detect"}


@pytest.mark.datasets
def test_dice():
    ds = open_dataset(shared_dataset("dice"))
    assert ds.layout == "mvtec"
    assert ds.counts() == {"train": {"good": 5904}, "test": {"anomaly": 352, "good": 315}}


def test_image_keys_tell_apart_files_of_one_name_and_size(tmp_path):
    """Numbered uncompressed images of one camera share names and sizes; the key reads their bytes."""
    from inspekt.data.dataset import image_key

    rng = np.random.default_rng(0)
    paths = [tmp_path / "train" / "good" / "000.bmp", tmp_path / "test" / "crack" / "000.bmp"]
    for path in paths:
        path.parent.mkdir(parents=True)
        path.write_bytes(rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    copy = tmp_path / "copy" / "000.bmp"
    copy.parent.mkdir()
    copy.write_bytes(paths[0].read_bytes())
    assert image_key(paths[0]) != image_key(paths[1]) and image_key(copy) == image_key(paths[0])
    assert image_key(tmp_path / "missing.bmp") is None
