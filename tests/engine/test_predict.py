"""Prediction options: binary thresholds, top-k, CSV/JSON output, saved and explained images,
CSV sources, and the notebook helpers on Prediction."""

from __future__ import annotations

import csv
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspekt.card import positive_class
from inspekt.cli import app
from inspekt.config import TrainConfig
from inspekt.engine.predictor import Predictor
from inspekt.engine.trainer import train
from inspekt.errors import ConfigError
from inspekt.io import load_image


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def binary(synth_classes, tmp_path_factory):
    """A 2-class (ok / scratch) bundle and its data folder."""
    data = tmp_path_factory.mktemp("binary") / "data"
    for name in ("ok", "scratch"):
        shutil.copytree(synth_classes / name, data / name)
    result = train(
        TrainConfig(
            task="classify",
            data=str(data),
            epochs=2,
            imgsz=32,
            batch=16,
            model_params={"width": 8},
            out=str(data.parent / "runs"),
            threads=1,
        )
    )
    return result.bundle, data


def test_threshold_decides_the_binary_label(binary):
    bundle, data = binary
    files = sorted(str(p) for p in data.rglob("*.png"))
    plain = Predictor.load(bundle).predict(files)
    positive = positive_class(("ok", "scratch"))
    assert positive == "scratch"
    everything = Predictor.load(bundle, threshold=0.0).predict(files)
    nothing = Predictor.load(bundle, threshold=1.0).predict(files)
    assert {p.label for p in everything} == {"scratch"}
    assert {p.label for p in nothing} <= {"ok"}
    middle = float(np.median([p.scores["scratch"] for p in plain]))
    split = Predictor.load(bundle, threshold=middle).predict(files)
    assert all((p.label == "scratch") == (p.scores["scratch"] >= middle) for p in split)
    assert all(np.isclose(p.score, p.scores[p.label]) for p in split)


def test_threshold_is_refused_where_it_means_nothing(trained, binary):
    with pytest.raises(ConfigError, match="applies to binary classifiers"):
        Predictor.load(trained.bundle, threshold=0.5)
    with pytest.raises(ConfigError, match=r"must be a probability in \[0, 1\]"):
        Predictor.load(binary[0], threshold=1.5)


def test_top_k_and_repr(trained, synth_classes):
    prediction = Predictor.load(trained.bundle).predict(str(next(synth_classes.glob("pore/*.png"))))[0]
    top = prediction.top(2)
    assert len(top) == 2 and top[0][0] == prediction.label and top[0][1] >= top[1][1]
    assert list(prediction.to_dict(topk=2)["scores"]) == [name for name, _ in top]
    assert len(prediction.to_dict()["scores"]) == 4
    assert prediction.label in repr(prediction) and "then" in repr(prediction)


def test_plot_draws_the_image_and_label(trained, synth_classes, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    prediction = Predictor.load(trained.bundle).predict(str(next(synth_classes.glob("ok/*.png"))))[0]
    ax = prediction.plot()
    assert prediction.label in ax.get_title() and len(ax.images) == 1
    ax.figure.savefig(tmp_path / "p.png")
    assert load_image(tmp_path / "p.png").shape[0] > 50


def test_cli_csv_json_topk_and_threshold(binary):
    bundle, data = binary
    out = run("predict", bundle, data / "ok", "--csv")
    assert out.exit_code == 0, out.output
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == len(list((data / "ok").glob("*.png")))
    assert {"path", "label", "score", "score_ok", "score_scratch", "time_ms"} <= set(rows[0])
    lines = run("predict", bundle, data / "scratch", "--json", "--topk", "1", "--threshold", "0").stdout.splitlines()
    parsed = [json.loads(line) for line in lines]
    assert parsed and all(p["label"] == "scratch" and len(p["scores"]) == 1 for p in parsed)
    # every row names the model that made it (its name and its graph's hash), as the table's summary line does
    digest = json.loads((Path(bundle) / "card.json").read_text())["digests"]["model.onnx"].removeprefix("sha256:")
    named = f"{Path(bundle).parent.name if Path(bundle).name == 'bundle' else Path(bundle).stem}@{digest[:12]}"
    assert {r["model"] for r in rows} == {p["model"] for p in parsed} == {named}
    table = run("predict", bundle, data / "ok")
    assert f"by {named} (thresholds: decision threshold" in table.output


def test_cli_save_dir_and_explain_write_full_size_images(trained, synth_classes, tmp_path):
    source = sorted(synth_classes.glob("lop/*.png"))[:3]
    same_stem = tmp_path / "other" / source[0].name  # equal names from two folders must not collide
    same_stem.parent.mkdir()
    shutil.copy(source[0], same_stem)
    out = run("predict", trained.bundle, *source, same_stem, "--save-dir", tmp_path / "saved", "--explain", "--json")
    assert out.exit_code == 0, out.output
    saved = [json.loads(line)["saved"] for line in out.stdout.splitlines()]
    assert len(set(saved)) == 4
    for path, original in zip(saved, [*source, same_stem]):
        assert load_image(path).shape[:2] == load_image(original, mode="keep").shape[:2]


def test_cli_reads_a_csv_of_paths_and_reports_bad_rows(trained, synth_classes, tmp_path):
    listing = tmp_path / "list.csv"
    good = sorted(synth_classes.glob("ok/*.png"))[:2]
    listing.write_text("image,note\n" + "".join(f"{p},x\n" for p in good) + "missing.png,y\n")
    out = run("predict", trained.bundle, listing, "--json")
    assert out.exit_code == 0, out.output
    assert len(out.stdout.splitlines()) == 2
    assert "missing.png" in out.stderr and "2 predicted" in out.stderr
