"""Scale-out on a real Dask cluster (LocalCluster worker processes): drift profiles and predictions
partitioned over workers equal the single-process run, bad files are reported once, and a wrong
scheduler address is a clear error."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
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
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=40
    ) as cluster:
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
    for row in rows:  # timings, and how many images shared a model call, depend on how the work was split
        for key in ("time_ms", "batch_ms", "batch_images"):
            row.pop(key, None)
    return rows


def test_predict_on_the_cluster_equals_the_local_run(trained, images, scheduler):
    local = _cli("predict", str(trained.bundle), str(images), "--json")
    spread = _cli("predict", str(trained.bundle), str(images), "--json", "--dask", scheduler, "--batch", "4")
    rows = _lines(spread.stdout)
    assert len(rows) == len(list(images.rglob("*.png"))) - 1
    assert rows == _lines(local.stdout)
    assert [r["path"] for r in rows] == sorted(r["path"] for r in rows)  # input order kept
    assert spread.stderr.count("zz_broken.png") == 1 and f"loaded {len(rows)} images" in spread.stderr


def test_predict_on_without_a_report_names_the_unreadable_files(trained, images, scheduler):
    from inspekt.engine.distributed import predict_on

    files = [str(p) for p in sorted(images.rglob("*.png"))]
    with distributed.Client(scheduler) as client, pytest.warns(UserWarning, match=r"zz_broken.png: not an image"):
        done = [p for chunk, _ in predict_on(client, str(trained.bundle), files) for p in chunk]
    assert len(done) == len(files) - 1  # dropped silently before: no report, no warning


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
    assert {c["name"] for c in spread["checks"]} >= {
        "prediction:label_mix",
        "embeddings",
    }  # the model ran on the workers


@pytest.mark.slow
def test_profiles_merged_from_workers_equal_the_whole(images, scheduler, tmp_path):
    _cli("profile", str(images), "--out", str(tmp_path / "spread.json"), "--dask", scheduler)
    _cli("profile", str(images), "--out", str(tmp_path / "local.json"))
    spread, local = Profile.load(tmp_path / "spread.json"), Profile.load(tmp_path / "local.json")
    assert spread.files == local.files and len(spread.files) > 16  # more than one chunk was merged
    np.testing.assert_array_equal(spread.pixel_histogram, local.pixel_histogram)
    for name, values in local.values.items():
        np.testing.assert_array_equal(spread.values[name], values)
    assert [s.path for s in spread.skipped] == [s.path for s in local.skipped] == [str(images / "ok/zz_broken.png")]


def test_relative_paths_work_on_workers_started_in_another_folder(trained, images, scheduler, monkeypatch):
    # The workers' working folder is the one pytest started in, as a remote worker's is its own:
    # relative names must still reach the same files, and come back as the user typed them.
    monkeypatch.chdir(images.parent)
    bundle, folder = os.path.relpath(trained.bundle), images.name
    local = _lines(_cli("predict", bundle, folder, "--json").stdout)
    spread = _cli("predict", bundle, folder, "--json", "--dask", scheduler)
    assert _lines(spread.stdout) == local and len(local) == len(list(images.rglob("*.png"))) - 1
    assert local[0]["path"].startswith(f"{folder}/") and f"{folder}/ok/zz_broken.png" in spread.stderr
    _cli("profile", folder, "--out", "spread.json", "--dask", scheduler)
    profile = Profile.load("spread.json")
    assert len(profile.files) == len(local) and profile.files[0].startswith(f"{folder}/")
    assert [s.path for s in profile.skipped] == [f"{folder}/ok/zz_broken.png"]


def test_a_bundle_replaced_at_the_same_path_is_reloaded_by_the_workers(trained, images, scheduler, tmp_path):
    # Workers keep their predictors between commands: a bundle written again at the same path (retrained,
    # a new threshold) must not be answered by the stale copy.
    model = tmp_path / "model"
    shutil.copytree(trained.bundle, model)
    args = ["predict", str(model), str(images / "ok"), "--json", "--dask", scheduler]
    before = _lines(_cli(*args).stdout)
    card = json.loads((model / "card.json").read_text())
    card["classes"] = [f"renamed-{name}" for name in card["classes"]]
    (model / "card.json").write_text(json.dumps(card))
    after = _lines(_cli(*args).stdout)
    assert len(after) == len(before) > 0
    assert [r["label"] for r in after] == [f"renamed-{r['label']}" for r in before]


def test_a_bundle_the_workers_cannot_read_is_one_clear_error(trained, images, scheduler):
    from inspekt.bundle import copy_bundle, open_bundle
    from inspekt.cluster import connect
    from inspekt.engine.distributed import predict_on
    from inspekt.errors import BundleError

    url = "memory://client-only/model.inspekt"  # in this process only: a worker without the shared disk
    copy_bundle(open_bundle(trained.bundle), url, overwrite=True)
    with (
        connect(scheduler) as client,
        pytest.raises(
            BundleError, match="on a Dask worker: .*no such file.*every worker must be able to read the bundle"
        ),
    ):
        list(predict_on(client, url, [str(next((images / "ok").glob("*.png")))]))


@pytest.mark.slow
def test_a_local_cluster_from_the_python_api(images):
    result = check_drift(
        images / "ok", images / "pore", dask="local", workers=2, permutations=200, checks=("properties",)
    )
    alone = check_drift(images / "ok", images / "pore", permutations=200, checks=("properties",))
    assert [(c.name, c.p_value, c.effect) for c in result.checks] == [
        (c.name, c.p_value, c.effect) for c in alone.checks
    ]


def test_check_drift_on_a_local_cluster_takes_one_worker_per_core_by_default(images, monkeypatch):
    """connect's workers=1 now means one worker; check_drift's default must still mean one per core."""
    from contextlib import contextmanager

    from inspekt import cluster

    asked: list = []

    @contextmanager
    def recording(address, workers=0):
        asked.append(workers)
        yield None  # no client: the check runs here, which is all this test needs

    monkeypatch.setattr(cluster, "connect", recording)
    check_drift(images / "ok", images / "pore", dask="local", permutations=19, checks=("properties",))
    check_drift(images / "ok", images / "pore", dask="local", workers=3, permutations=19, checks=("properties",))
    assert asked == [0, 3]


def test_local_workers_ignore_the_terminal_s_ctrl_c_and_the_command_keeps_it():
    """Ctrl-C reaches the whole process group: each local worker printed a KeyboardInterrupt traceback."""
    import signal

    from inspekt.cluster import connect

    before = signal.getsignal(signal.SIGINT)
    with connect("local", 1) as client:
        assert signal.getsignal(signal.SIGINT) is before  # the command itself still stops on Ctrl-C
        handlers = client.run(lambda: int(signal.getsignal(signal.SIGINT)))
    assert list(handlers.values()) == [int(signal.SIG_IGN)]


@pytest.mark.slow
def test_a_script_without_a_main_guard_is_told_the_fix(images, tmp_path):
    # Worker processes import the user's script again; unguarded, its top level starts a cluster in each.
    script = tmp_path / "unguarded.py"
    script.write_text(
        f"import inspekt\ninspekt.check_drift({str(images / 'ok')!r}, {str(images / 'pore')!r}, "
        "dask='local', workers=2, permutations=20, checks=('properties',))\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=180, cwd=tmp_path)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines()[-1].startswith("inspekt.errors.InspektError: --dask local: the worker")
    assert 'if __name__ == "__main__":' in proc.stderr


@pytest.mark.slow
def test_a_wrong_scheduler_address_is_one_clear_line(images, monkeypatch):
    from inspekt import cluster

    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1)
    runner = CliRunner()
    no_protocol = runner.invoke(app, ["profile", str(images), "--out", "p.json", "--dask", "127.0.0.1:9"])
    assert no_protocol.exit_code == 2 and "tcp://127.0.0.1:9" in no_protocol.output
    unreachable = runner.invoke(app, ["drift", str(images / "ok"), str(images / "pore"), "--dask", "tcp://127.0.0.1:9"])
    assert unreachable.exit_code == 2 and "cannot reach the Dask scheduler" in unreachable.output
    assert "connecting to the Dask scheduler at tcp://127.0.0.1:9" in unreachable.output  # not silent meanwhile
    typo = runner.invoke(app, ["profile", str(images), "--out", "p.json", "--dask", "lcoal"])
    assert typo.exit_code == 2 and 'Did you mean "local"?' in typo.output
    negative = runner.invoke(app, ["profile", str(images), "--out", "p.json", "--dask", "local", "--workers", "-3"])
    assert negative.exit_code == 2 and "--workers -3: give a number of worker processes" in negative.output
    with distributed.LocalCluster(n_workers=0, dashboard_address=":0", silence_logs=50) as empty:  # all workers gone
        idle = runner.invoke(app, ["profile", str(images), "--out", "p.json", "--dask", empty.scheduler_address])
    assert idle.exit_code == 2 and "the scheduler has no workers" in idle.output  # not a silent hang
