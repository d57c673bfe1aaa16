"""Scale-out on a real Dask cluster (LocalCluster worker processes): drift profiles and predictions
partitioned over workers equal the single-process run, bad files are reported once, and a wrong
scheduler address is a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from inspekt.cli import app
from inspekt.drift import Profile, check_drift

distributed = pytest.importorskip("distributed", reason="Dask is an optional extra: pip install 'inspekt[dist]'")

FAST = ["--permutations", "200", "--checks", "properties,pixels,predictions,embeddings"]


@pytest.fixture(scope="module")
def scheduler():
    """A real two-worker cluster; tests reach it by its tcp:// address, as users reach theirs."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=40) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def images(synth_classes, tmp_path_factory) -> Path:
    """Two classes of the synthetic set plus one broken file, in one folder tree."""
    root = tmp_path_factory.mktemp("cluster") / "images"
    for name in ("ok", "pore"):
        shutil.copytree(synth_classes / name, root / name)
    (root / "ok" / "zz_broken.png").write_bytes(b"not an image")
    return root


def _cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code in (0, 3), result.output
    return result


def _lines(text: str) -> list[dict]:
    rows = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    for row in rows:
        row.pop("time_ms")
    return rows


def test_predict_on_the_cluster_equals_the_local_run(trained, images, scheduler):
    local = _cli("predict", str(trained.bundle), str(images), "--json")
    spread = _cli("predict", str(trained.bundle), str(images), "--json", "--dask", scheduler, "--batch", "4")
    rows = _lines(spread.stdout)
    assert len(rows) == len(list(images.rglob("*.png"))) - 1
    assert rows == _lines(local.stdout)
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)  # input order kept
    assert spread.stderr.count("zz_broken.png") == 1 and f"loaded {len(rows)} images" in spread.stderr


def test_drift_on_the_cluster_equals_the_local_run_and_names_the_shift(trained, images, scheduler, tmp_path):
    dark = tmp_path / "dark"
    dark.mkdir()
    for path in sorted((images / "pore").glob("*.png"))[:20]:
        from inspekt.io import load_image, save_image

        save_image(dark / path.name, (load_image(path) * 0.5).astype(np.uint8))
    args = ["drift", str(trained.bundle), str(dark), "--as-json", *FAST]
    local = json.loads(_cli(*args).stdout)
    spread = json.loads(_cli(*args, "--dask", scheduler).stdout)
    assert spread == local
    assert spread["drift"] and "brightness" in spread["drifted"]
    assert {c["name"] for c in spread["checks"]} >= {"prediction:label_mix", "embeddings"}  # the model ran on the workers


def test_profiles_merged_from_workers_equal_the_whole(images, scheduler, tmp_path):
    _cli("profile", str(images), "--out", str(tmp_path / "spread.json"), "--dask", scheduler)
    _cli("profile", str(images), "--out", str(tmp_path / "local.json"))
    spread, local = Profile.load(tmp_path / "spread.json"), Profile.load(tmp_path / "local.json")
    assert spread.files == local.files and len(spread.files) > 16  # more than one chunk was merged
    np.testing.assert_array_equal(spread.pixel_histogram, local.pixel_histogram)
    for name, values in local.values.items():
        np.testing.assert_array_equal(spread.values[name], values)
    assert [s.path for s in spread.skipped] == [s.path for s in local.skipped] == [str(images / "ok/zz_broken.png")]


def test_a_local_cluster_from_the_python_api(images):
    result = check_drift(images / "ok", images / "pore", dask="local", workers=2, permutations=200,
                         checks=("properties",))
    alone = check_drift(images / "ok", images / "pore", permutations=200, checks=("properties",))
    assert [(c.name, c.p_value, c.effect) for c in result.checks] == [(c.name, c.p_value, c.effect)
                                                                      for c in alone.checks]


def test_a_wrong_scheduler_address_is_one_clear_line(images, monkeypatch):
    from inspekt import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    runner = CliRunner()
    no_protocol = runner.invoke(app, ["profile", str(images), "--out", "p.json", "--dask", "127.0.0.1:9"])
    assert no_protocol.exit_code == 2 and "tcp://127.0.0.1:9" in no_protocol.output
    unreachable = runner.invoke(app, ["drift", str(images / "ok"), str(images / "pore"), "--dask", "tcp://127.0.0.1:9"])
    assert unreachable.exit_code == 2 and "cannot reach the Dask scheduler" in unreachable.output
