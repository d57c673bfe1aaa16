"""Annotation formats in: COCO, YOLO, Pascal VOC, CVAT and Label Studio files built here from synthetic
images, good and broken, read through ``open_dataset`` (issue 21)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from inspekt.data import Box, open_dataset
from inspekt.data.formats import brush, read_annotations, voc
from inspekt.data.info import describe
from inspekt.data.masks import read_mask
from inspekt.errors import DatasetError
from inspekt.io import save_image

W, H = 48, 40  # not square, so a swapped width / height shows


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("INSPEKT_CACHE_DIR", str(tmp_path / "cache"))


def image(folder, name, seed=0):
    rng = np.random.default_rng(seed)
    return save_image(folder / name, rng.integers(0, 255, (H, W, 3), dtype=np.uint8))


def rect(x0, y0, x1, y1):
    """A boolean HxW mask of the pixels x0..x1-1, y0..y1-1."""
    out = np.zeros((H, W), bool)
    out[y0:y1, x0:x1] = True
    return out


def mask_of(sample):
    return read_mask(sample.mask) if sample.mask is not None else np.zeros((H, W), np.uint8)


def problems_text(ds):
    return "\n".join(f"{p.path}: {p.reason}" for p in ds.problems)


# --- COCO ---------------------------------------------------------------------------------------


def coco_rle(mask):
    from pycocotools import mask as coco_mask

    rle = coco_mask.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode()}


def write_coco(tmp_path, annotations, images=None):
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        image(tmp_path / "images", name, seed=i)
    images = images or [
        {"id": i + 1, "file_name": n, "width": W, "height": H} for i, n in enumerate(("a.png", "b.png", "c.png"))
    ]
    categories = [{"id": 1, "name": "pore"}, {"id": 2, "name": "scratch"}, {"id": 3, "name": "ok"}]
    path = tmp_path / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path


def test_coco_polygons_rle_boxes_and_image_classes(tmp_path):
    scratch = rect(30, 5, 44, 9)
    path = write_coco(
        tmp_path,
        [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [[4, 6, 14, 6, 14, 16, 4, 16]],
                "bbox": [4, 6, 10, 10],
            },
            {
                "id": 2,
                "image_id": 2,
                "category_id": 2,
                "segmentation": coco_rle(scratch),
                "bbox": [30, 5, 14, 4],
                "iscrowd": 1,
            },
            {"id": 3, "image_id": 3, "category_id": 3, "segmentation": [], "bbox": []},
        ],
    )
    ds = open_dataset(path)
    assert ds.layout == "coco" and len(ds) == 3 and not ds.problems
    a, b, c = ds.samples
    # classes with shapes, sorted: pore -> 255, scratch -> 254
    assert np.array_equal(mask_of(a), np.where(rect(4, 6, 14, 16), 255, 0))
    assert np.array_equal(mask_of(b), np.where(scratch, 254, 0))  # RLE: pixel-exact
    assert a.boxes == (Box("pore", 4, 6, 14, 16),) and a.label == "pore"
    assert c.label == "ok" and c.boxes == () and c.mask is None  # an image-level class, no objects


def test_coco_bad_entries_are_reported_and_skipped(tmp_path):
    images = [
        {"id": 1, "file_name": "a.png", "width": W, "height": H},
        {"id": 2, "file_name": "missing.png", "width": W, "height": H},
        {"id": 3, "file_name": "c.png", "width": 99, "height": H},
    ]
    path = write_coco(
        tmp_path,
        [
            {"id": 1, "image_id": 1, "category_id": 7, "bbox": [1, 1, 5, 5]},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [40, 30, 20, 20]},
            {"id": 3, "image_id": 1, "category_id": 2, "segmentation": [[1, 1, 2, 2]], "bbox": [1, 1, 1, 1]},
            {"id": 4, "image_id": 42, "category_id": 1, "bbox": [1, 1, 5, 5]},
        ],
        images,
    )
    ds = open_dataset(path)
    text = problems_text(ds)
    assert [s.path.name for s in ds.samples] == ["a.png"]
    assert ds.samples[0].boxes == (Box("pore", 40, 30, W, H),)  # clipped to the image
    assert "unknown category_id 7" in text and "add the category" in text
    assert "reaches outside the 48x40 image; clipped" in text
    assert "fewer than 3 points" in text
    assert "image_id 42 is not in images" in text
    assert "image not found" in text and "missing.png" in text
    assert "says the image is 99x40" in text
    assert [p.reason for p in describe(ds).annotation_problems] == [p.reason for p in ds.problems]


def test_coco_records_of_the_wrong_shape_are_reported(tmp_path):
    images = [
        {"id": 1, "file_name": "a.png", "width": W, "height": H},
        {"id": 2, "file_name": "b.png", "width": "wide", "height": H},
    ]
    path = write_coco(
        tmp_path, [["not", "an", "object"], {"id": 9, "image_id": 1, "category_id": 1, "bbox": "x"}], images
    )
    ds = open_dataset(path)
    assert [s.path.name for s in ds.samples] == ["a.png"]
    assert [p.path for p in ds.problems] == [
        "instances.json: images[1]",
        "instances.json: annotation 0",
        "instances.json: annotation 9",
    ]


def test_malformed_json_names_the_line(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text('{"images": [\n{"id": 1,,}]}')
    with pytest.raises(DatasetError, match=r"broken.json: not valid JSON \(line 2"):
        open_dataset(path)


# --- YOLO ---------------------------------------------------------------------------------------


def test_yolo_boxes_polygons_names_splits_and_bad_files(tmp_path):
    for name in ("a.png", "b.png", "c.png", "d.png"):
        image(tmp_path / "images" / "train", name)
    labels = tmp_path / "labels" / "train"
    labels.mkdir(parents=True)
    (tmp_path / "data.yaml").write_text("names: [pore, scratch]\n")
    (labels / "a.txt").write_text("0 0.5 0.5 0.5 0.5\n1 0.125 0.25 0.375 0.25 0.375 0.75 0.125 0.75\n")
    (labels / "b.txt").write_text("0 0.5 0.5 0.5\n")  # wrong field count
    (labels / "c.txt").write_text("5 0.5 0.5 0.1 0.1\n")  # unknown class id
    ds = open_dataset(tmp_path)
    assert ds.layout == "yolo" and [s.path.name for s in ds.samples] == ["a.png", "d.png"]
    a, d = ds.samples
    assert a.split == "train" and a.boxes[0] == Box("pore", 12, 10, 36, 30)
    assert a.boxes[1] == Box("scratch", 6, 10, 18, 30)  # a polygon's box
    assert np.array_equal(mask_of(a) == 255, rect(6, 10, 18, 30))  # scratch, the only class with a mask
    assert d.boxes == () and d.mask is None  # no label file: no objects
    text = problems_text(ds)
    assert "b.txt: line 1 has 4 values" in text and "class cx cy w h" in text
    assert "c.txt: line 1 class 5 is not in the class names" in text


# --- Pascal VOC ---------------------------------------------------------------------------------


def write_voc(tmp_path, colour=False):
    image(tmp_path / "JPEGImages", "a.jpg")
    image(tmp_path / "JPEGImages", "b.jpg")  # no mask: not read in a segmentation set
    indices = np.zeros((H, W), np.uint8)
    indices[5:15, 5:20] = 1  # aeroplane
    indices[20:30, 25:40] = 15  # person
    indices[4, 4:21] = voc.VOID
    (tmp_path / "SegmentationClass").mkdir()
    if colour:
        Image.fromarray(voc.palette()[indices]).save(tmp_path / "SegmentationClass" / "a.png")
    else:
        png = Image.fromarray(indices, mode="P")
        png.putpalette(voc.palette().ravel().tolist())
        png.save(tmp_path / "SegmentationClass" / "a.png")
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(
        f"<annotation><size><width>{W}</width><height>{H}</height></size><object><name>person</name>"
        "<bndbox><xmin>26</xmin><ymin>21</ymin><xmax>40</xmax><ymax>30</ymax></bndbox></object></annotation>"
    )
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("a\n")
    return indices


@pytest.mark.parametrize("colour", [False, True])
def test_voc_palette_masks_and_xml_boxes(tmp_path, colour):
    write_voc(tmp_path, colour)
    ds = open_dataset(tmp_path)
    assert ds.layout == "voc" and len(ds) == 1 and not ds.problems
    (a,) = ds.samples
    m = mask_of(a)
    assert np.array_equal(m == 255, rect(5, 5, 20, 15))  # aeroplane (classes sorted: aeroplane, person)
    assert np.array_equal(m == 254, rect(25, 20, 40, 30))
    assert m[4, 10] == 0  # void counts as background
    assert Box("person", 25, 20, 40, 30) in a.boxes and a.split == "val"


def test_voc_unreadable_xml_skips_the_image(tmp_path):
    write_voc(tmp_path)
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(DatasetError, match="no usable images.*not valid XML"):
        open_dataset(tmp_path)


# --- CVAT ---------------------------------------------------------------------------------------


def test_cvat_tags_boxes_polygons_masks(tmp_path):
    image(tmp_path / "images", "a.png")
    image(tmp_path / "images", "b.png")
    # a 3x2 mask at (10, 20) as CVAT counts 1 bg, 3 fg, 1 bg, 1 fg: rows "011" and "101"
    (tmp_path / "annotations.xml").write_text(
        '<?xml version="1.0"?><annotations><version>1.1</version>'
        f'<image id="0" name="a.png" width="{W}" height="{H}" subset="Train">'
        '<box label="pore" xtl="2" ytl="3" xbr="12" ybr="13"/>'
        '<polygon label="scratch" points="20,5;30,5;30,15;20,15"/>'
        '<mask label="pore" rle="1, 3, 1, 1" left="10" top="20" width="3" height="2"/>'
        '<points label="pore" points="1,1"/></image>'
        f'<image id="1" name="b.png" width="{W}" height="{H}"><tag label="ok"/></image></annotations>'
    )
    ds = open_dataset(tmp_path / "annotations.xml")
    assert ds.layout == "cvat" and len(ds) == 2
    a, b = ds.samples
    expected = np.zeros((H, W), np.uint8)
    expected[5:15, 20:30] = 254  # scratch
    expected[20, 11:13], expected[21, 10], expected[21, 12] = 255, 255, 255  # pore's mask
    assert np.array_equal(mask_of(a), expected)
    assert a.boxes[0] == Box("pore", 2, 3, 12, 13) and a.split == "train"
    assert b.label == "ok" and b.boxes == ()
    assert "<points> is not read" in problems_text(ds)


def test_cvat_xml_entity_expansion_is_refused(tmp_path):
    path = tmp_path / "bomb.xml"
    path.write_text(
        '<?xml version="1.0"?><!DOCTYPE annotations [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
        "<annotations><image id='0' name='x.png'><tag label='&b;'/></image></annotations>"
    )
    with pytest.raises(DatasetError, match="refused"):
        open_dataset(path)


# --- Label Studio -------------------------------------------------------------------------------


def ls_result(kind, value):
    return {
        "type": kind,
        "value": value,
        "original_width": W,
        "original_height": H,
        "from_name": "x",
        "to_name": "image",
    }


def test_labelstudio_choices_rectangles_polygons_brushes(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        image(tmp_path / "images", name)
    brushed = rect(3, 4, 9, 7) | rect(30, 30, 33, 38)
    tasks = [
        {
            "id": 1,
            "data": {"image": "/data/local-files/?d=images/a.png"},
            "annotations": [
                {"was_cancelled": True, "result": [ls_result("choices", {"choices": ["wrong"]})]},
                {
                    "result": [
                        ls_result("choices", {"choices": ["defect"]}),
                        ls_result(
                            "rectanglelabels",
                            {"x": 25, "y": 50, "width": 50, "height": 25, "rectanglelabels": ["pore"]},
                        ),
                        ls_result(
                            "polygonlabels",
                            {"points": [[50, 0], [75, 0], [75, 25], [50, 25]], "polygonlabels": ["scratch"]},
                        ),
                        ls_result(
                            "brushlabels", {"format": "rle", "rle": brush.encode(brushed), "brushlabels": ["pore"]}
                        ),
                    ]
                },
            ],
        },
        {"id": 2, "data": {"image": "/data/upload/3/1a2b3c4d-b.png"}, "annotations": [{"result": []}]},
        {"id": 3, "data": {"image": "c.png"}, "predictions": [{"result": []}]},
    ]
    path = tmp_path / "export.json"
    path.write_text(json.dumps(tasks))
    ds = open_dataset(path)
    assert ds.layout == "labelstudio" and [s.path.name for s in ds.samples] == ["a.png", "b.png"]
    a, b = ds.samples
    assert a.label == "defect" and b.boxes == ()
    assert a.boxes[0] == Box("pore", 12, 20, 36, 30)
    m = mask_of(a)
    assert np.array_equal(m == 254, rect(24, 0, 36, 10) & ~brushed)  # scratch polygon
    assert np.array_equal(m == 255, brushed)  # brush RLE: pixel-exact
    assert "task 3: c.png has no annotation" in problems_text(ds)


def test_brush_rle_decodes_literal_chunks_written_by_hand():
    # 2x1 image: 8 values. Header: 32-bit count, word size - 1 = 7, field widths - 1 = 2, 3, 7, 15.
    bits = f"{8:032b}" + f"{7:05b}" + "0010" + "0011" + "0111" + "1111"
    bits += "0" + "00" + f"{3:03b}" + "00000000" * 3 + "00000001"  # literal: 4 words 0, 0, 0, 1
    bits += "1" + "00" + f"{3:03b}" + "11111111"  # repeat: 4 x 255
    bits += "0" * (-len(bits) % 8)
    data = list(int(bits, 2).to_bytes(len(bits) // 8, "big"))
    assert brush.decode(data, 1, 2).tolist() == [[1, 255]]  # the alpha channel of each pixel
    with pytest.raises(DatasetError, match="not 3x2x4"):
        brush.decode(data, 3, 2)
    with pytest.raises(DatasetError, match="ends early"):
        brush.decode(data[:6], 1, 2)


@pytest.mark.parametrize("seed", range(5))
def test_brush_rle_round_trips_random_masks(seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((17, 300)) < [0.02, 0.5, 0.98][seed % 3]
    mask[:, :10] = seed % 2 == 0  # long runs, above a 16-bit chunk once repeated over rows
    decoded = brush.decode(brush.encode(mask), *mask.shape)
    assert np.array_equal(decoded > 0, mask)


def test_a_csv_boxes_column_reads_back(tmp_path):
    image(tmp_path, "a.png")
    image(tmp_path, "b.png")
    (tmp_path / "labels.csv").write_text('path,label,boxes\na.png,pore,"[[""pore"", 1, 2, 10, 12]]"\nb.png,ok,[]\n')
    a, b = open_dataset(tmp_path / "labels.csv").samples
    assert a.boxes == (Box("pore", 1, 2, 10, 12),) and b.boxes == ()
    (tmp_path / "labels.csv").write_text("path,label,boxes\na.png,pore,[[1, 2\n")
    with pytest.raises(DatasetError, match=r"labels.csv:2: boxes .* is not JSON"):
        open_dataset(tmp_path / "labels.csv")


def test_unknown_or_mismatched_format_is_refused(tmp_path):
    path = write_coco(tmp_path, [])
    with pytest.raises(DatasetError, match="unknown annotation format 'datumaro'"):
        read_annotations(path, "datumaro")
    with pytest.raises(DatasetError, match="is not a CVAT for images .xml file"):
        read_annotations(path, "cvat")


def test_yolo_classification_folders_are_the_class_folder_layout(tmp_path):
    for split in ("train", "val"):
        for label in ("ok", "scratch"):
            image(tmp_path / split / label, f"{label}.png")
    ds = open_dataset(tmp_path)
    assert ds.layout == "classes" and ds.classes == ("ok", "scratch") and ds.splits == ("train", "val")
