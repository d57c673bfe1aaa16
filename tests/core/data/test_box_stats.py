"""``data info`` on boxes: counts per class, sizes, annotated negatives, boxes outside their image,
and the boxes a detector reads from masks."""

from __future__ import annotations

import json

import numpy as np

from inspekt.data import open_dataset
from inspekt.data.info import describe
from inspekt.io import save_image


def test_box_counts_sizes_negatives_and_boxes_outside_the_image(tmp_path):
    for name in ("a", "b", "c"):
        save_image(tmp_path / f"{name}.png", np.zeros((40, 60), np.uint8))
    rows = [
        ("a.png", [["pore", 1, 2, 11, 7], ["crack", 10, 10, 50, 30]]),
        ("b.png", [["pore", 50, 30, 70, 45]]),  # 10 px past the right edge, 5 past the bottom
        ("c.png", []),
    ]
    lines = ["path,boxes"] + [f'{p},"{json.dumps(b).replace(chr(34), chr(34) * 2)}"' for p, b in rows]
    (tmp_path / "labels.csv").write_text("\n".join(lines) + "\n")
    boxes = describe(open_dataset(tmp_path / "labels.csv")).boxes
    assert boxes.source == "annotations" and boxes.n_boxes == 3 and boxes.images_with_boxes == 2
    assert boxes.per_class == {"crack": 1, "pore": 2} and boxes.negatives == 1
    assert boxes.width == {"min": 10.0, "median": 20.0, "max": 40.0} and boxes.small == 1
    assert [p.path for p in boxes.outside] == [str(tmp_path / "b.png")]
    assert "60x40 image" in boxes.outside[0].reason


def test_a_mask_dataset_is_described_by_its_regions(tmp_path):
    mask = np.zeros((32, 32), np.uint8)
    mask[2:6, 3:9] = 255
    mask[20:30, 20:24] = 255
    save_image(tmp_path / "images" / "x.png", np.zeros((32, 32), np.uint8))
    save_image(tmp_path / "masks" / "x.png", mask)
    boxes = describe(open_dataset(tmp_path)).boxes
    assert boxes.source == "masks" and boxes.n_boxes == 2 and boxes.per_class == {"defect": 2}
    assert boxes.width["max"] == 6 and boxes.height["max"] == 10 and not boxes.outside
