"""Every user path may be an fsspec URL: tested against a real S3-compatible server (moto_server,
started here on a free loopback port) through the same s3fs client users have, and through the CLI
and Python front doors. Each result is compared with the local run on the same files."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import reset_s3_clients
from inspekt import storage
from inspekt.cli import app
from inspekt.errors import InspektError

BUCKET = "inspekt-test"
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="session")
def s3(s3_endpoint, tmp_path_factory, trained):
    """The bucket, holding a tiny dataset, a folder of incoming images, and the tiny bundle as a folder
    and as a .inspekt zip. Returns the local copies too, for comparison."""
    import fsspec

    from inspekt.bundle import copy_bundle, open_bundle
    from inspekt.data.synth import write_dataset

    fs = fsspec.filesystem("s3")
    fs.mkdir(BUCKET)
    local = tmp_path_factory.mktemp("s3-local")
    dataset = write_dataset(local / "dataset", n=16, size=32, seed=3).root
    incoming = write_dataset(local / "incoming", n=8, size=32, seed=4).root
    zipped = copy_bundle(open_bundle(trained.bundle), local / "model.inspekt", archive=True)
    for name, folder in (("dataset", dataset), ("incoming", incoming), ("model", trained.bundle)):
        storage.upload_folder(folder, storage.as_path(f"s3://{BUCKET}/{name}"))
    fs.put_file(str(zipped), f"{BUCKET}/model.inspekt")
    return {"fs": fs, "dataset": dataset, "incoming": incoming, "bundle": zipped, "url": f"s3://{BUCKET}"}


def _json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def _by_name(rows: list[dict]) -> dict[str, dict]:
    return {Path(row["path"]).name + Path(row["path"]).parent.name: row for row in rows}


# --- paths and URLs -----------------------------------------------------------------------------


def test_local_paths_stay_pathlib(tmp_path):
    assert storage.as_path(str(tmp_path)) == tmp_path and isinstance(storage.as_path("a/b.png"), Path)
    assert storage.as_path(f"file://{tmp_path}") == tmp_path
    assert not storage.is_remote("C:/data/a.png") and not storage.is_remote(tmp_path / "a.png")
    assert storage.is_remote("s3://b/k") and storage.is_remote(Path("s3://b/k"))  # pathlib's collapsed form
    assert str(storage.as_path(Path("s3://bucket/key.png"))) == "s3://bucket/key.png"


def test_a_card_records_its_data_as_an_absolute_path_or_a_url(tmp_path, monkeypatch):
    """``inspekt demo --workspace demo`` recorded "demo/data/surfaces": from inside demo/, export --int8
    then said the training data "is not there"."""
    monkeypatch.chdir(tmp_path)
    assert storage.source_text("demo/data/surfaces") == str(tmp_path / "demo" / "data" / "surfaces")
    assert storage.source_text(Path("split.csv")) == str(tmp_path / "split.csv")
    assert storage.source_text("s3://bucket/data/") == "s3://bucket/data"
    assert storage.source_text(Path("s3://bucket/split.csv")) == "s3://bucket/split.csv"
    assert storage.source_text(f"file://{tmp_path}/data") == str(tmp_path / "data")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert storage.source_text("~/data") == str(tmp_path / "home" / "data")


def test_same_source_tells_urls_from_local_paths(tmp_path, monkeypatch):
    """curate compared a card's data source with ``Path(...).resolve()``, which turned s3://b/data into a local
    path under the working folder (and could not take a remote dataset root at all)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    assert storage.same_source("data", tmp_path / "data") and storage.same_source(tmp_path / "link", "data/")
    assert storage.same_source(f"file://{tmp_path}/data", "data")
    assert storage.same_source("s3://bucket/data", storage.as_path("s3://bucket/data/"))
    assert not storage.same_source("s3://bucket/data", tmp_path / "s3:" / "bucket" / "data")
    assert not storage.same_source("s3://bucket/data", "s3://bucket/other") and not storage.same_source("data", "other")
    assert storage.same_source("nosuchproto://x/y/", "nosuchproto://x/y")


def test_memory_urls_list_read_and_write_images(tmp_path):
    from inspekt.io import list_images, load_image, save_image

    image = (np.arange(32 * 32 * 3) % 251).astype(np.uint8).reshape(32, 32, 3)
    written = save_image("memory://storage-test/set/a/one.png", image)
    save_image("memory://storage-test/set/b/two.png", image[:, :, 0])
    storage.as_path("memory://storage-test/set/.hidden/x.png").write_bytes(b"not listed")
    found = list_images("memory://storage-test/set")
    assert [p.name for p in found] == ["one.png", "two.png"]
    assert str(written) == "memory:///storage-test/set/a/one.png"
    assert np.array_equal(load_image(str(found[0])), image)
    assert np.array_equal(load_image(found[1], mode="keep"), image[:, :, 0])


def test_read_ahead_keeps_order_and_leaves_failures_to_the_reader(tmp_path):
    from inspekt.io import iter_images, save_image
    from inspekt.results import BatchReport

    image = np.full((8, 8), 7, np.uint8)
    local = save_image(tmp_path / "local.png", image)
    remote = [str(save_image(f"memory://read-ahead/{i}.png", image + i)) for i in range(5)]
    sources = [remote[0], local, b"not an image", *remote[1:], "memory://read-ahead/missing.png"]
    passed = list(storage.read_ahead(sources, window=2))
    assert passed[1] is local and passed[2] == b"not an image" and passed[-1] == "memory://read-ahead/missing.png"
    assert [getattr(p, "name", None) for p in passed[3:-1]] == remote[1:]
    report = BatchReport()
    loaded = list(iter_images(sources, mode="L", report=report))
    assert [label for label, _ in loaded] == [remote[0], str(local), *remote[1:]]
    assert [int(a[0, 0]) for _, a in loaded] == [7, 7, 8, 9, 10, 11]
    assert [(s.path, s.reason) for s in report.skipped][1] == ("memory://read-ahead/missing.png", "file not found")


def test_unknown_protocol_is_one_clear_error():
    with pytest.raises(storage.StorageError, match="unknown storage protocol 'nosuchfs'"):
        storage.as_path("nosuchfs://bucket/x")


# --- S3 through the real front doors --------------------------------------------------------------


def test_predict_from_s3_equals_local(s3):
    remote = run("predict", f"{s3['url']}/model.inspekt", f"{s3['url']}/incoming/", "--json")
    local = run("predict", s3["bundle"], s3["incoming"], "--json")
    assert remote.exit_code == 0, remote.output
    remote_rows, local_rows = _json_lines(remote.stdout), _json_lines(local.stdout)
    assert len(remote_rows) == len(local_rows) == 8
    assert all(row["path"].startswith(f"{s3['url']}/incoming/") for row in remote_rows)
    by_local = _by_name(local_rows)
    for key, row in _by_name(remote_rows).items():
        assert row["label"] == by_local[key]["label"]
        assert row["scores"] == pytest.approx(by_local[key]["scores"], abs=1e-6)


def test_predict_globs_s3_skips_a_bad_image_and_saves_visuals_there(s3):
    fs, url = s3["fs"], s3["url"]
    good = next(p for p in sorted(s3["incoming"].rglob("*.png")))
    fs.put_file(str(good), f"{BUCKET}/mixed/good.png")
    fs.pipe_file(f"{BUCKET}/mixed/broken.png", b"\x89PNG\r\n\x1a\nthis is not an image")
    out = run(
        "predict",
        f"{url}/model",
        f"{url}/mixed/*.png",
        f"{url}/mixed/missing.png",
        "--json",
        "--save-dir",
        f"{url}/visuals",
    )
    assert out.exit_code == 0, out.output
    assert [row["path"] for row in _json_lines(out.stdout)] == [f"{url}/mixed/good.png"]
    assert f"{url}/mixed/broken.png: corrupt or truncated" in out.stderr
    assert f"{url}/mixed/missing.png: file not found" in out.stderr
    assert fs.exists(f"{BUCKET}/visuals/good_pred.png")


def test_load_model_from_s3_predicts_s3_images(s3):
    import inspekt

    files = sorted(str(p.relative_to(s3["incoming"])) for p in s3["incoming"].rglob("*.png"))[:3]
    remote = inspekt.load_model(f"{s3['url']}/model.inspekt").predict([f"{s3['url']}/incoming/{f}" for f in files])
    local = inspekt.load_model(s3["bundle"]).predict([str(s3["incoming"] / f) for f in files])
    assert [r.label for r in remote] == [r.label for r in local]
    assert np.allclose([r.score for r in remote], [r.score for r in local], atol=1e-6)


@pytest.mark.slow
def test_drift_reads_bundle_and_images_from_s3_and_writes_reports_there(s3):
    url, fs = s3["url"], s3["fs"]
    options = ("--checks", "properties,pixels,predictions,embeddings", "--permutations", "50", "--as-json")
    remote = run(
        "drift",
        f"{url}/model",
        f"{url}/incoming",
        "--json",
        f"{url}/reports/drift.json",
        "--html",
        f"{url}/reports/drift.html",
        *options,
    )
    local = run("drift", s3["bundle"], s3["incoming"], *options)
    assert remote.exit_code == 0, remote.output
    printed, expected = json.loads(remote.stdout), json.loads(local.stdout)
    written = json.loads(fs.cat_file(f"{BUCKET}/reports/drift.json"))
    for document in (printed, written):
        assert document["drift"] == expected["drift"]
        assert [c["p_value"] for c in document["checks"]] == [c["p_value"] for c in expected["checks"]]
    assert {"prediction:label_mix", "embeddings"} <= {c["name"] for c in printed["checks"]}  # the S3 bundle predicted
    assert fs.cat_file(f"{BUCKET}/reports/drift.html").startswith(b"<!doctype html>")
    assert f"wrote {url}/reports/drift.json" in remote.stderr


@pytest.mark.slow
def test_profile_in_worker_processes_to_s3_and_back_as_drift_reference(s3):
    from inspekt.drift import Profile, load_profile

    url = s3["url"]
    # A fresh process, as users run it: in-process, worker processes come from a forkserver that an
    # earlier test may have started before this module's fixture set the S3 credentials.
    inspekt = Path(sys.executable).with_name("inspekt")
    out = subprocess.run(
        [str(inspekt), "profile", f"{url}/dataset", "--out", f"{url}/profiles/dataset.json", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    saved = Profile.load(f"{url}/profiles/dataset.json")
    local = load_profile(str(s3["dataset"]))
    assert len(saved) == len(local) == 16
    assert np.allclose(saved.to_dict()["properties"]["brightness"], local.to_dict()["properties"]["brightness"])
    again = run(
        "drift",
        f"{url}/profiles/dataset.json",
        f"{url}/incoming",
        "--checks",
        "properties",
        "--permutations",
        "20",
        "--as-json",
    )
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["n_reference"] == 16


@pytest.mark.slow
def test_eval_reads_s3_dataset_and_writes_reports_there(s3):
    url, fs = s3["url"], s3["fs"]
    remote = run(
        "eval",
        f"{url}/model.inspekt",
        "--data",
        f"{url}/dataset",
        "--json",
        f"{url}/eval/metrics.json",
        "--csv",
        f"{url}/eval/rows.csv",
        "--plots",
        f"{url}/eval/plots",
    )
    local = run("eval", s3["bundle"], "--data", s3["dataset"], "--json", "-")
    assert remote.exit_code == 0, remote.output
    metrics = json.loads(fs.cat_file(f"{BUCKET}/eval/metrics.json"))["metrics"]
    expected = json.loads(local.stdout)["metrics"]
    assert metrics["n"] == expected["n"] == 16
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"])
    rows = fs.cat_file(f"{BUCKET}/eval/rows.csv").decode().splitlines()
    assert len(rows) == 17 and rows[1].startswith(f"{url}/dataset/")
    for name in ("confusion.png", "confusion_normalized.png", "gallery.html"):
        assert fs.exists(f"{BUCKET}/eval/plots/{name}")  # staged locally, then uploaded
    assert f"wrote {url}/eval/plots/confusion.png" in remote.stderr


def test_export_reads_and_writes_s3(s3):
    from inspekt.bundle import open_bundle

    url = s3["url"]
    out = run("export", f"{url}/model", "--out", f"{url}/exported/model.inspekt", "--json")
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["bundle"] == f"{url}/exported/model.inspekt"
    exported = open_bundle(f"{url}/exported/model.inspekt")
    assert exported.card.classes == open_bundle(s3["bundle"]).card.classes and exported.has("model.onnx")
    again = run("export", f"{url}/model", "--out", f"{url}/exported/model.inspekt")
    assert again.exit_code == 2 and "--overwrite" in again.output


@pytest.mark.slow
def test_a_remote_run_that_diverges_after_a_good_epoch_uploads_the_kept_model(s3, synth_classes):
    from inspekt.bundle import open_bundle
    from inspekt.config import TrainConfig
    from inspekt.engine.runs import train_staged
    from inspekt.engine.trainer import train
    from inspekt.errors import TrainingDiverged

    def diverging(cfg, **options):  # a real one-epoch run, then the divergence the trainer raises after it
        result = train(cfg, **options)
        raise TrainingDiverged(
            f"training diverged at epoch 2 (loss nan): ...; kept the best model before it in {result.bundle}",
            epoch=2,
            what="loss nan",
        )

    cfg = TrainConfig(
        task="classify", data=str(synth_classes), out=f"{s3['url']}/diverged", epochs=1, imgsz=32, batch=8,
        augment="none", model_params={"width": 4}, threads=1,
    )  # fmt: skip
    with pytest.raises(TrainingDiverged) as caught:
        train_staged(cfg, diverging)
    remote = f"{s3['url']}/diverged/classify/exp"
    assert f"kept the best model before it in {remote}/bundle" in str(caught.value)  # where it really is
    assert open_bundle(f"{remote}/bundle").card.task == "classify"
    assert "diverged" in s3["fs"].cat(f"{BUCKET}/diverged/classify/exp/config.yaml").decode()


def test_ctrl_c_while_a_remote_run_finishes_uploads_it_and_resume_by_url_writes_the_bundle(s3, monkeypatch):
    """Ctrl-C after the last epoch deleted the staged run: nothing reached S3, and nothing was said."""
    import inspekt.engine.trainer as trainer

    url, fs = s3["url"], s3["fs"]
    write_reference = trainer.write_reference

    def ctrl_c(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "write_reference", ctrl_c)
    args = ["--epochs", "1", "--imgsz", "32", "--batch", "8", "--augment", "none", "model_params={width: 4}"]
    out = run("train", "classify", "--data", f"{url}/dataset", "--out", f"{url}/late", *args, "threads=1")
    remote = f"{url}/late/classify/exp"
    assert out.exit_code == 130 and f"continue it with inspekt train classify --resume {remote}" in out.output
    assert fs.exists(f"{BUCKET}/late/classify/exp/checkpoints/last.pt")
    monkeypatch.setattr(trainer, "write_reference", write_reference)
    resumed = run("train", "classify", "--resume", remote, "--json")
    assert resumed.exit_code == 0, resumed.output
    assert json.loads(resumed.stdout)["bundle"] == f"{remote}/bundle"
    assert fs.exists(f"{BUCKET}/late/classify/exp/bundle/reference.json")
    assert "out: s3://" in fs.cat(f"{BUCKET}/late/classify/exp/config.yaml").decode()  # not the staging folder


def test_train_from_s3_dataset_into_s3_runs(s3):
    from inspekt.bundle import open_bundle

    url, fs = s3["url"], s3["fs"]
    out = run(
        "train",
        "classify",
        "--data",
        f"{url}/dataset",
        "--out",
        f"{url}/runs",
        "--epochs",
        "1",
        "--imgsz",
        "32",
        "--batch",
        "8",
        "--augment",
        "none",
        "--json",
        "model_params={width: 4}",
        "threads=1",
    )
    assert out.exit_code == 0, out.output
    result = json.loads(out.stdout)
    assert result["run_dir"] == f"{url}/runs/classify/exp" and result["bundle"] == f"{url}/runs/classify/exp/bundle"
    assert fs.exists(f"{BUCKET}/runs/classify/exp/results.csv")
    card = open_bundle(result["bundle"]).card
    assert card.data.source == f"{url}/dataset" and card.data.n_samples > 0
    evaluated = run("eval", result["bundle"], "--data", f"{url}/dataset", "--json", "-")
    assert evaluated.exit_code == 0, evaluated.output  # which images the model saw is known for S3 images too
    assert json.loads(evaluated.stdout)["metrics"]["n_seen"] == 16
    compared = run("runs", "compare", result["run_dir"], "--json", "--plot", f"{url}/reports/curves.png")
    assert compared.exit_code == 0, compared.output
    assert json.loads(compared.stdout)[0]["epochs_run"] == 1
    assert fs.cat_file(f"{BUCKET}/reports/curves.png").startswith(b"\x89PNG")  # a figure to a URL (a TypeError)
    resumed = run("train", "classify", "--resume", result["run_dir"])
    assert resumed.exit_code == 2 and f"{url}/runs/classify/exp: the run already finished" in resumed.output
    nowhere = run(
        "train",
        "classify",
        "--data",
        str(s3["dataset"]),
        "--out",
        "s3://no-such-bucket-here/runs",
        "--epochs",
        "50",
        "--imgsz",
        "32",
        "threads=1",
    )
    assert nowhere.exit_code == 2 and "cannot upload the run folder: no such bucket" in nowhere.output
    assert "epoch" not in nowhere.output.lower()  # refused before training, not after


def _samples(dataset, root) -> list[tuple]:
    def rel(path):
        return None if path is None else str(path).removeprefix(str(root)).lstrip("/")

    return sorted((rel(s.path), s.label, rel(s.mask), s.split) for s in dataset.samples)


@pytest.mark.parametrize("layout", ["segmentation", "mvtec"])
def test_mask_layouts_read_from_s3_like_local(s3, tmp_path, layout):
    from inspekt.data import open_dataset
    from inspekt.data.synth import write_dataset

    local = open_dataset(write_dataset(tmp_path / layout, n=8, size=32, seed=5, layout=layout).root)
    url = f"{s3['url']}/layouts/{layout}"
    storage.upload_folder(local.root, storage.as_path(url))
    remote = open_dataset(url)
    assert (remote.layout, remote.classes, remote.n_masks) == (local.layout, local.classes, local.n_masks)
    assert _samples(remote, url) == _samples(local, local.root)
    assert remote.fingerprint() == local.fingerprint()


def test_split_csv_written_to_s3_reads_back_as_a_dataset(s3):
    from inspekt.data import open_dataset

    url = s3["url"]
    out = run("data", "split", f"{url}/dataset", "--out", f"{url}/splits/split.csv", "--json")
    assert out.exit_code == 0, out.output
    rows = s3["fs"].cat_file(f"{BUCKET}/splits/split.csv").decode().splitlines()
    assert rows[0] == "path,label,mask,split" and rows[1].startswith("../dataset/")
    remote, folder = open_dataset(f"{url}/splits/split.csv"), open_dataset(f"{url}/dataset")
    assert sorted(str(s.path) for s in remote.samples) == sorted(str(s.path) for s in folder.samples)
    assert remote.splits == ("train", "val", "test")
    again = run("data", "split", f"{url}/dataset", "--out", f"{url}/splits/split.csv", "--seed", "1")
    assert again.exit_code == 0, again.output  # an earlier split CSV on S3 is replaced (a TypeError before)
    evaluated = run("eval", f"{url}/model.inspekt", "--data", f"{url}/splits/split.csv", "--json", "-")
    assert evaluated.exit_code == 0, evaluated.output
    assert json.loads(evaluated.stdout)["split"] == "test"


# --- clear errors -----------------------------------------------------------------------------------


def test_missing_bucket_key_and_unwritable_report_fail_in_one_line(s3):
    missing_bucket = run("predict", "s3://no-such-bucket-here/model.inspekt", f"{s3['url']}/incoming")
    assert missing_bucket.exit_code == 2 and "no such bucket 'no-such-bucket-here'" in missing_bucket.output
    assert "Traceback" not in missing_bucket.output
    source = run("predict", f"{s3['url']}/model.inspekt", "s3://no-such-bucket-here/images/")
    assert source.exit_code == 2 and "s3://no-such-bucket-here/images/: no such bucket" in source.output
    assert "skipped" not in source.output  # said as what it is, not as one unreadable "file"
    missing_key = run("eval", f"{s3['url']}/model.inspekt", "--data", f"{s3['url']}/no-such-dataset")
    assert missing_key.exit_code == 2 and f"{s3['url']}/no-such-dataset: no such file" in missing_key.output
    report = run("drift", f"{s3['url']}/model", f"{s3['url']}/incoming", "--json", "s3://no-such-bucket-here/r.json")
    assert report.exit_code == 2 and "no such bucket" in report.output


def test_uploads_into_a_missing_bucket_fail_in_one_line_and_staging_fails_before_the_work(s3, tmp_path):
    (tmp_path / "results.csv").write_text("epoch\n1\n")
    with pytest.raises(storage.StorageError, match="cannot upload there: no such bucket 'no-such-bucket-here'"):
        storage.upload_folder(tmp_path, storage.as_path("s3://no-such-bucket-here/runs/exp"))
    entered = []
    with pytest.raises(storage.StorageError, match="cannot write there: no such bucket 'no-such-bucket-here'"):
        with storage.staged_folder("s3://no-such-bucket-here/plots") as folder:
            entered.append(folder)
    assert entered == []  # no work was done into a folder that could never be uploaded
    with storage.staged_folder(f"{s3['url']}/staged") as folder:  # an existing bucket: written at the end
        (folder / "a.txt").write_text("a")
    assert s3["fs"].cat_file(f"{BUCKET}/staged/a.txt") == b"a"


def test_no_credentials_is_one_clear_error(s3, monkeypatch, tmp_path):
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    reset_s3_clients()
    try:
        out = run("predict", f"{s3['url']}/model.inspekt", f"{s3['url']}/incoming")
        with pytest.raises(InspektError, match="no credentials found"):
            storage.as_path(f"{s3['url']}/model.inspekt").exists()
    finally:
        reset_s3_clients()
    assert out.exit_code == 2 and "no credentials found" in out.output and "AWS_ACCESS_KEY_ID" in out.output


def test_an_endpoint_that_never_answers_is_one_clear_error_in_bounded_time(s3, monkeypatch):
    """An endpoint that accepted connections and never replied held a command silent for many minutes."""
    import socket
    import threading

    from inspekt.storage import remote

    server = socket.create_server(("127.0.0.1", 0))
    held: list = []
    threading.Thread(target=lambda: held.extend(server.accept() for _ in range(64)), daemon=True).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setattr(remote, "S3_CLIENT", {"connect_timeout": 1, "read_timeout": 1, "retries": {"max_attempts": 1}})
    reset_s3_clients()
    try:
        with pytest.raises(storage.StorageError, match="did not answer in time .*check AWS_ENDPOINT_URL"):
            storage.as_path(f"{s3['url']}/model.inspekt").exists()
    finally:
        reset_s3_clients()
        server.close()


def test_missing_s3fs_names_the_install_command():
    code = (
        "import sys; sys.modules['s3fs'] = None\n"
        "from inspekt import storage\n"
        "try:\n    storage.as_path('s3://bucket/model.inspekt')\n"
        "except storage.StorageError as exc:\n    print(exc)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    expected = "s3://bucket/model.inspekt: reading s3:// URLs needs an extra package; pip install 'inspekt[dist]'"
    assert expected in proc.stdout


def test_access_denied_becomes_a_storage_error_with_the_fix():
    from inspekt.storage.remote import _translate

    # moto does not enforce IAM by default, so the translation is checked on the exception s3fs raises.
    translated = _translate(PermissionError("Access Denied"), "s3://bucket/key.png")
    assert isinstance(translated, storage.StorageError)
    assert str(translated).startswith("s3://bucket/key.png: access denied (Access Denied); check that these")
