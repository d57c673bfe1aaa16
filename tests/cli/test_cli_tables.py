"""What the CLI's tables and reports say (issue 19): file names whole at 120 columns, the settings that
tell two runs apart and the epoch each bundle holds, and `data info`'s imbalance warning, silence
about masks a dataset does not have, and near-duplicate pictures."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
from PIL import Image

LONG_NAME = "part_000123_top_view_exposure_long_from_the_second_camera.png"


def cli(*args) -> subprocess.CompletedProcess:
    exe = os.path.join(os.path.dirname(sys.executable), "inspekt")
    env = os.environ | {"COLUMNS": "120"}
    proc = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc


def _long_path(synth_classes, tmp_path):
    folder = tmp_path / "a_rather_long_folder_name_for_inspection_images" / "line_3_camera_2_shift_b"
    folder.mkdir(parents=True)
    target = folder / LONG_NAME
    shutil.copy(next((synth_classes / "ok").iterdir()), target)
    return target


def test_predict_and_explain_tables_show_the_file_name_whole(trained, synth_classes, tmp_path):
    image = _long_path(synth_classes, tmp_path)
    assert LONG_NAME in cli("predict", trained.bundle, image).stdout
    explained = cli("explain", trained.bundle, image, "--out", tmp_path / "out").stdout
    assert LONG_NAME in explained and (tmp_path / "out" / LONG_NAME.replace(".png", "_gradcam.png")).is_file()


def _copy_run(trained, target, **config):
    shutil.copytree(trained.run_dir, target)
    text = (target / "config.yaml").read_text()
    for key, value in config.items():
        text = "\n".join(f"{key}: {value}" if line.startswith(f"{key}:") else line for line in text.splitlines())
    (target / "config.yaml").write_text(text + "\n")
    return target


def test_runs_compare_shows_the_differing_settings_and_the_bundled_epoch(trained, tmp_path):
    a = _copy_run(trained, tmp_path / "a" / "exp")
    b = _copy_run(trained, tmp_path / "b" / "exp", lr=0.02, batch=4)
    bundled = int(json.loads((a / "bundle" / "card.json").read_text())["metrics"]["best_epoch"])
    # make another epoch's validation macro-F1 the highest in b's results.csv: the bundle still holds `bundled`
    rows = list(csv.DictReader((b / "results.csv").open()))
    other = next(r for r in rows if int(r["epoch"]) != bundled)
    other["val_macro_f1"] = "0.999"
    with (b / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    out = cli("runs", "compare", a, b).stdout
    assert "settings that differ" in out
    lines = {line.split()[1]: line for line in out.splitlines() if line.strip().startswith("│")}
    assert "0.005" in lines["lr"] and "0.02" in lines["lr"] and "8" in lines["batch"] and "4" in lines["batch"]
    assert "0.999" not in out and f"({bundled})" in out
    [ja, jb] = json.loads(cli("runs", "compare", a, b, "--json").stdout)
    assert ja["best_epoch"] == jb["best_epoch"] == bundled
    assert jb["config_differences"] == {"lr": 0.02, "batch": 4} and ja["config_differences"]["lr"] == 0.005


def test_data_info_warns_of_imbalance_finds_near_duplicates_and_keeps_quiet_about_masks(synth_classes, tmp_path):
    root = tmp_path / "d"
    for name, n in (("ok", 16), ("pore", 3)):
        (root / name).mkdir(parents=True)
        for source in sorted((synth_classes / name).iterdir())[:n]:
            shutil.copy(source, root / name / source.name)
    first = sorted((root / "ok").iterdir())[0]
    pixels = np.asarray(Image.open(first)).astype(np.int16)
    resaved = Image.fromarray(np.clip(pixels + 3, 0, 255).astype(np.uint8)).resize((64, 64))
    resaved.save(root / "ok" / "copy_of_first.png")  # other bytes, the same picture: brighter and larger
    out = cli("data", "info", root).stdout
    assert "imbalanced" in out and "ok has 17 images" in out and "pore 3" in out
    assert "mask" not in out.lower()
    assert "near-duplicate groups (same picture re-saved, resized or re-exposed): 1" in out
    assert "copy_of_first.png" in out and first.name in out
    info = json.loads(cli("data", "info", root, "--json").stdout)
    assert info["imbalance"]["largest"] == "ok" and info["imbalance"]["smallest"] == "pore"
    assert len(info["near_duplicates"]) == 1 and info["duplicates"] == []
