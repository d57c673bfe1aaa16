"""The workbench pages, run headless with Streamlit's AppTest against a small workspace."""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from inspekt.app import MAIN
from inspekt.app.common import WORKSPACE_ENV, find_bundles

TIMEOUT = 120


@pytest.fixture(scope="module")
def workspace(trained, synth_classes, tmp_path_factory) -> Path:
    """models/classifier (the session's tiny bundle), data/surfaces (its synthetic images), and a
    tiny segmenter trained on data/surfaces-seg."""
    from inspekt.data.synth import write_dataset
    from inspekt.engine.trainer import train

    root = tmp_path_factory.mktemp("workspace")
    shutil.copytree(trained.bundle, root / "models" / "classifier")
    shutil.copytree(synth_classes, root / "data" / "surfaces")
    shutil.copytree(Path(synth_classes) / "pore", root / "data" / "incoming" / "pore")
    seg = write_dataset(root / "data" / "surfaces-seg", n=24, size=48, seed=4, layout="segmentation").root
    result = train(
        task="segment",
        data=str(seg),
        model="tiny_unet",
        model_params={"width": 4, "depth": 3},
        epochs=2,
        imgsz=32,
        batch=8,
        augment="none",
        threads=1,
        out=str(tmp_path_factory.mktemp("seg-runs")),
    )
    shutil.copytree(result.bundle, root / "models" / "segmenter")
    mvtec = write_dataset(root / "data" / "surfaces-mvtec", n=48, size=48, seed=5, layout="mvtec").root
    result = train(
        task="anomaly",
        data=str(mvtec),
        model="ae_ssim",
        model_params={"width": 4, "latent": 16},
        epochs=2,
        imgsz=32,
        batch=8,
        threads=1,
        out=str(tmp_path_factory.mktemp("anomaly-runs")),
    )
    shutil.copytree(result.bundle, root / "models" / "anomaly")
    return root


def _page(workspace: Path, monkeypatch, page: str, model: str = "models/classifier") -> AppTest:
    monkeypatch.setenv(WORKSPACE_ENV, str(workspace))
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    at.session_state["model"] = model
    at.run()
    if page != "inspect":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [s.value for s in at.success] + [e.value for e in at.error] + [w.value for w in at.warning]
    return "\n".join(str(p) for p in parts)


def test_the_workspace_bundles_are_found(workspace):
    assert {"models/classifier", "models/segmenter", "models/anomaly"} <= set(find_bundles(workspace))


@pytest.mark.slow
def test_inspect_predicts_an_image_with_enhancement_and_gradcam(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "inspect")
    assert "Upload an image" in _texts(at)
    image = next((workspace / "data" / "surfaces" / "pore").glob("*.png"))
    at.text_input(key="image_path").input(str(image)).run()
    assert not at.exception, at.exception
    assert any(m.value.startswith("### ") for m in at.markdown)  # the prediction card
    assert len(at.get("progress")) >= 2  # one bar per class
    at.sidebar.toggle(key="enh_on_clahe").set_value(True).run()
    assert not at.exception and "enhancement: clahe(clip_limit=2, tile_grid=8)" in _texts(at)
    from inspekt.enhance import Pipeline

    calls, enhance = [], Pipeline.__call__
    monkeypatch.setattr(Pipeline, "__call__", lambda self, image: calls.append(1) or enhance(self, image))
    at.toggle(key="gradcam").set_value(True).run()
    assert not at.exception, at.exception
    assert calls == []  # the enhanced image is kept: a toggle ran the whole pipeline again (seconds on photos)
    assert any("gradcam for" in str(c.value) for c in at.caption)
    at.selectbox(key="whatif").select("gamma: gamma").run()  # what-if sweep
    assert not at.exception, at.exception
    assert at.get("arrow_line_chart") or at.get("vega_lite_chart") or at.get("arrow_vega_lite_chart")


def test_the_chosen_model_and_enhancement_hold_across_pages(workspace, monkeypatch):
    """Streamlit dropped the picker's and the enhancement's widget values on a page change: the picker then
    fell back to another model on every other page."""
    at = _page(workspace, monkeypatch, "inspect")
    at.sidebar.selectbox(key="model").set_value("models/segmenter").run()
    at.sidebar.toggle(key="enh_on_clahe").set_value(True).run()
    for page in ("batch", "evaluate", "drift", "batch", "inspect"):
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, at.exception
        assert at.sidebar.selectbox(key="model").value == "models/segmenter", page
        if page in ("batch", "inspect"):  # the pages that enhance
            assert at.sidebar.toggle(key="enh_on_clahe").value is True, page


@pytest.mark.slow
def test_inspect_says_what_is_wrong_with_a_bad_file(workspace, monkeypatch, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    at = _page(workspace, monkeypatch, "inspect")
    at.text_input(key="image_path").input(str(bad)).run()
    assert not at.exception
    assert "Not an image we can read" in _texts(at)


@pytest.mark.slow
def test_inspect_shows_a_segmentation_mask_and_its_regions(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "inspect", model="models/segmenter")
    image = next((workspace / "data" / "surfaces-seg" / "images").rglob("*.png"))
    at.text_input(key="image_path").input(str(image)).run()
    assert not at.exception, at.exception
    assert any("largest defect probability" in m.value for m in at.markdown)
    assert any("region(s)" in str(c.value) for c in at.caption)
    at.sidebar.slider[0].set_value(0.99).run()  # the decision threshold
    assert not at.exception, at.exception


@pytest.mark.slow
def test_evaluate_a_segmenter(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "evaluate", model="models/segmenter")
    at.text_input[0].input(str(workspace / "data" / "surfaces-seg")).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "defect_iou" in [m.label for m in at.metric]


@pytest.mark.slow
def test_inspect_an_anomaly_model_shows_map_and_reconstruction(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "inspect", model="models/anomaly")
    image = next((workspace / "data" / "surfaces-mvtec" / "test" / "scratch").glob("*.png"))
    at.text_input(key="image_path").input(str(image)).run()
    assert not at.exception, at.exception
    assert any("anomaly score" in m.value for m in at.markdown)
    assert "of pixels anomalous" in _texts(at)  # the map panel's caption
    at.sidebar.slider[0].set_value(0.0).run()  # every image is anomalous at threshold 0
    assert not at.exception and any(m.value.startswith("### anomaly") for m in at.markdown)


@pytest.mark.slow
def test_evaluate_an_anomaly_model(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "evaluate", model="models/anomaly")
    at.text_input[0].input(str(workspace / "data" / "surfaces-mvtec")).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert {"image_auroc", "pixel_auroc", "aupro"} <= {m.label for m in at.metric}


@pytest.mark.slow
def test_evaluate_advises_a_better_threshold_when_the_stored_one_passes_every_defect(workspace, monkeypatch):
    from inspekt.engine.evaluator import save_threshold

    strict = workspace / "models" / "zz-strict-anomaly"  # a copy: the other tests keep the calibrated one
    shutil.copytree(workspace / "models" / "anomaly", strict)
    try:
        save_threshold(strict, 1.0)  # no normalised score reaches 1: every image passes as normal
        at = _page(workspace, monkeypatch, "evaluate", model="models/zz-strict-anomaly")
        at.text_input[0].input(str(workspace / "data" / "surfaces-mvtec")).run()
        at.button[0].click().run()
        assert not at.exception, at.exception
        advice = [w.value for w in at.warning if w.value.startswith("Threshold: ")]
        assert advice and "F1 is 0.00 (100% of the defects pass" in advice[0], [w.value for w in at.warning]
        assert "`inspekt eval --set-threshold best-f1` stores it" in advice[0]
    finally:
        shutil.rmtree(strict)


@pytest.mark.slow
def test_batch_predicts_a_folder(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "batch")
    at.text_input[0].input(str(workspace / "data" / "incoming")).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    n = len(list((workspace / "data" / "incoming").rglob("*.png")))
    assert len(table) == n
    assert set(table["label"]) <= {"lop", "ok", "pore", "scratch"}
    counts = table["label"].value_counts()  # the totals per label, and what the gallery shows of the table
    assert f"**{n} predicted:** " + ", ".join(f"{k} {v}" for k, v in counts.items()) in _texts(at)
    assert f"the first {min(24, n)} of the {n} images in the table above" in _texts(at)
    assert "decided at the model's stored thresholds: none (the highest score decides)" in _texts(at)


@pytest.mark.slow
def test_batch_reports_a_missing_folder(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "batch")
    at.text_input[0].input(str(workspace / "nowhere")).run()
    at.button[0].click().run()
    assert not at.exception
    assert "nowhere" in _texts(at)


@pytest.mark.slow
def test_evaluate_shows_metrics_and_errors(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "evaluate")
    at.button[0].click().run()
    assert not at.exception, at.exception
    labels = [m.label for m in at.metric]
    assert "accuracy" in labels and float(at.metric[labels.index("accuracy")].value) > 0.25
    assert "confusion matrix (rows = true)" in [h.value for h in at.subheader]
    assert len(at.dataframe) == 2  # per class, and the confusion matrix
    assert next(box for box in at.selectbox if box.label == "Split").value == "default"  # test, else val, else all
    # the synthetic set has no splits: the default falls back to all, which includes the training images
    note = "80 of the evaluated images trained or validated the model, so the scores flatter it"
    assert any(note in w.value for w in at.warning), [w.value for w in at.warning]
    rates = {m.label: m.value for m in at.metric if "rate" in m.label}
    assert set(rates) == {"escape rate", "false-reject rate"} and all(v.endswith("%") for v in rates.values())
    worst = next(c.value for c in at.caption if "worst images" in c.value)  # the error gallery says what it shows
    assert f"at most {12} here" in worst and "labelled with what went wrong" in worst


def test_a_drift_check_that_fails_leaves_only_its_error(workspace, monkeypatch, tmp_path):
    at = _page(workspace, monkeypatch, "drift")
    (tmp_path / "empty").mkdir()
    [incoming] = [t for t in at.text_input if t.label == "Incoming folder"]
    incoming.input(str(tmp_path / "empty")).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert any("no image files" in e.value for e in at.error), [e.value for e in at.error]
    assert not at.get("progress")  # the "profiling ..." bar is gone with the failed check


@pytest.mark.slow
def test_drift_against_the_model_profile(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "drift")
    at.button[0].click().run()
    assert not at.exception, at.exception
    verdicts = [e.value for e in at.error] + [s.value for s in at.success] + [w.value for w in at.warning]
    assert any(v.startswith(("**Drift detected", "**No significant drift", "**Inconclusive")) for v in verdicts)
    names = set(at.dataframe[0].value["check"])
    assert {"brightness", "domain_classifier", "prediction:label_mix", "embeddings"} <= names


@pytest.mark.slow
def test_train_runs_in_the_background_and_joins_the_model_picker(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "train")
    epochs = at.number_input[0]  # empty: the task's own default, as the CLI without --epochs
    assert epochs.value is None and epochs.proto.placeholder == "the task's default (55)"
    epochs.set_value(1).run()
    at.number_input[1].set_value(32).run()
    at.text_input[1].input("bg-run").run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "started bg-run (model tiny_cnn, imgsz 32, epochs 1; process" in _texts(at)  # what runs, said
    deadline = time.monotonic() + TIMEOUT
    while "runs/classify/bg-run" not in find_bundles(workspace) and time.monotonic() < deadline:
        time.sleep(1)
    assert "runs/classify/bg-run" in find_bundles(workspace), (workspace / "runs" / ".jobs" / "bg-run.log").read_text()
    _wait_for_the_end(workspace, "bg-run", deadline)
    at.run()
    assert "bg-run · classify · done" in " ".join(e.label for e in at.expander)


def _wait_for_the_end(workspace: Path, name: str, deadline: float) -> None:
    """Until the job's process ends (it writes the drift reference after the bundle's card)."""
    from inspekt.app import jobs

    while any(j.name == name and j.running for j in jobs.jobs(workspace)) and time.monotonic() < deadline:
        time.sleep(0.5)


@pytest.mark.slow
def test_a_run_stopped_from_the_train_page_keeps_its_best_epoch(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "train")
    at.number_input[0].set_value(300).run()  # far more epochs than the test waits for
    at.number_input[1].set_value(32).run()
    at.text_input[1].input("stopped-run").run()
    at.button[0].click().run()
    results = workspace / "runs" / "classify" / "stopped-run" / "results.csv"
    deadline = time.monotonic() + TIMEOUT
    while not (results.is_file() and len(results.read_text().splitlines()) >= 3) and time.monotonic() < deadline:
        time.sleep(0.5)  # two epochs done
    at.run()
    at.button(key="stop-stopped-run").click().run()
    assert not at.exception, at.exception
    while "runs/classify/stopped-run" not in find_bundles(workspace) and time.monotonic() < deadline:
        time.sleep(0.5)
    from inspekt.bundle import open_bundle

    card = open_bundle(workspace / "runs" / "classify" / "stopped-run" / "bundle").card
    assert card.metrics["best_epoch"] < 300  # stopped long before the end, with a bundle of its best epoch
    _wait_for_the_end(workspace, "stopped-run", deadline)
    at.run()
    said = " ".join(e.label for e in at.expander)  # it said "done", as if all 300 epochs had run
    assert "stopped-run · classify · stopped by you; the best epoch so far is bundled" in said


def test_the_train_page_checks_the_data_first_and_names_runs_by_their_task(workspace, monkeypatch):
    at = _page(workspace, monkeypatch, "train")
    assert at.text_input(key="run_name").value.startswith("classify-")
    at.selectbox[0].set_value("detect").run()
    assert at.text_input(key="run_name").value.startswith("detect-")  # it kept "classify-..."
    at.text_input[0].input(str(workspace / "data" / "surfaces")).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    said = _texts(at)  # refused at once; the run used to start, fail, and read "stopped (see the log)"
    assert "cannot train detect models (it can train: classify" in said and "started" not in said
    at.text_input(key="run_name").input("mine").run()
    at.selectbox[0].set_value("segment").run()
    assert at.text_input(key="run_name").value == "mine"  # a name the user typed is kept


def test_a_failed_run_says_why(tmp_path):
    from inspekt.app import jobs

    log = tmp_path / "x.log"
    log.write_text("training ...\nerror: /data: no boxes and no masks, so there is nothing to detect\n")
    job = jobs.Job("x", "detect", tmp_path / "run", 2**22 + 12345, log)  # a pid no process has
    assert job.status() == "failed: /data: no boxes and no masks, so there is nothing to detect"
    (tmp_path / "run" / "bundle").mkdir(parents=True)  # stopped while its bundle was written: card, no reference
    (tmp_path / "run" / "bundle" / "card.json").write_text("{}")
    log.write_text("error: interrupted while the run was finishing (its bundle is not complete); ... --resume x\n")
    assert not job.done and job.status().startswith("failed: interrupted while the run was finishing")


@pytest.mark.slow
def test_monitor_shows_the_history_the_monitor_wrote(workspace, monkeypatch, tmp_path):
    from inspekt.monitor import MonitorConfig, run_monitor

    at = _page(workspace, monkeypatch, "monitor")
    assert "No monitoring history at" in _texts(at) and "inspekt monitor --model" in _texts(at)
    db = tmp_path / "monitor.db"
    run_monitor(
        MonitorConfig(
            model=str(workspace / "models" / "classifier"),
            db=str(db),
            once=True,
            every=0.01,
            source=str(workspace / "data" / "surfaces" / "pore"),
            window=8,
            settle=0.0,
        )
    )
    at.text_input(key="monitor_db").input(str(db)).run()
    assert not at.exception, at.exception
    assert [m.value for m in at.metric][:3] == ["20", "0", "2"]  # 20 pore images, two windows of 8
    assert re.search(r"Latest window \(8 images, \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\)", _texts(at))  # not raw ISO
    assert at.get("arrow_line_chart") or at.get("vega_lite_chart") or at.get("arrow_vega_lite_chart")
    assert len(at.dataframe) >= 1
    at.text_input(key="monitor_db").input("nosuchdb://x").run()
    said = _texts(at)  # named as the field on this page, not as the CLI's --db
    assert not at.exception and "History database 'nosuchdb://x': not a usable database URL" in said
    assert "--db" not in said


@pytest.mark.slow
def test_monitor_opens_on_an_overview_and_the_drifted_source(workspace, monkeypatch, tmp_path):
    import numpy as np

    from inspekt.io import load_image, save_image
    from inspekt.monitor import MonitorConfig, run_monitor

    steady, bright = tmp_path / "a_steady", tmp_path / "b_bright"
    steady.mkdir(), bright.mkdir()
    for folder in sorted((workspace / "data" / "surfaces").iterdir()):  # every class, as in training: steady
        for path in sorted(folder.glob("*.png"))[:4]:
            shutil.copy(path, steady / f"{folder.name}-{path.name}")
    for path in sorted(steady.glob("*.png")):  # the same parts under a lamp 120 levels brighter: drift
        image = load_image(path).astype(np.int16)
        save_image(bright / path.name, np.clip(image + 120, 0, 255).astype(np.uint8))
    save_image(bright / "a-tiny.png", np.full((1, 1, 3), 200, np.uint8))  # unlike every training image
    db = tmp_path / "two-sources.db"
    for source in (steady, bright):
        config = MonitorConfig(
            model=str(workspace / "models" / "classifier"), db=str(db), once=True, every=0.01,
            source=str(source), window=8, settle=0.0,
        )  # fmt: skip
        run_monitor(config)
    at = _page(workspace, monkeypatch, "monitor")
    at.text_input(key="monitor_db").input(str(db)).run()
    assert not at.exception, at.exception
    assert "All sources" in [h.value for h in at.subheader]
    overview = at.dataframe[0].value
    assert len(overview) == 2 and overview["drifted windows"].max() > 0
    assert overview.loc[overview["source"].str.contains("a_steady"), "drifted windows"].tolist() == [0]
    drifted = overview.loc[overview["drifted windows"] > 0, "source"].iloc[0]
    assert "b_bright" in drifted and at.selectbox(key="monitor_source").value == drifted  # not the first, green one
    [verdict] = [e.value for e in at.error if e.value.startswith("Latest window")]
    assert "pixels\\:grey" in verdict  # escaped: Streamlit's markdown read ':grey' as a directive and dropped it
    # the 1x1 picture by its size, and brightened parts by their embeddings (novelty): listed by name and reason
    [unlike] = [w.value for w in at.warning if "unlike the training images" in w.value]
    assert "image(s) unlike the training images: a\\-tiny\\.png: score" in unlike and "1x1 px" in unlike, unlike


def test_a_damaged_bundle_is_a_message_and_the_app_keeps_working(workspace, monkeypatch, tmp_path):
    from inspekt.engine.predictor import Predictor
    from inspekt.errors import BundleError

    broken = workspace / "models" / "zz-broken"
    shutil.copytree(workspace / "models" / "classifier", broken)
    (broken / "model.onnx").write_bytes(b"garbage")
    try:
        with pytest.raises(BundleError, match="model.onnx cannot be loaded"):
            Predictor.load(broken)
        at = _page(workspace, monkeypatch, "inspect", model="models/zz-broken")  # also the newest: warmed first
        assert any("cannot load models/zz-broken" in e.value for e in at.sidebar.error)
        at.sidebar.selectbox(key="model").select("models/classifier").run()
        assert not at.exception and not at.sidebar.error
    finally:
        shutil.rmtree(broken)


def test_the_train_page_reads_a_history_with_text_cells(tmp_path):
    """template_ratio's rows name the network they are about; the Train page's job history keeps them."""
    from inspekt.app.jobs import Job

    (tmp_path / "results.csv").write_text(
        "epoch,train_loss,lr,seconds,network\n1,0.5,0.001,1.2,variant classifier\n2,,0.001,1.1,variant classifier\n"
    )
    job = Job("run", "anomaly", tmp_path, 0, tmp_path / "log.txt")
    assert job.history == [
        {"epoch": 1.0, "train_loss": 0.5, "lr": 0.001, "seconds": 1.2, "network": "variant classifier"},
        {"epoch": 2.0, "train_loss": None, "lr": 0.001, "seconds": 1.1, "network": "variant classifier"},
    ]


def test_a_model_that_failed_its_sanity_check_is_never_the_default(trained, tmp_path, monkeypatch):
    from inspekt.bundle import copy_bundle, open_bundle
    from inspekt.card import Sanity

    source = open_bundle(trained.bundle)
    collapsed = source.card.model_copy(
        update={"metrics": {"val_accuracy": 0.99}, "sanity": Sanity(ok=False, why="predicts ok for every image")}
    )  # the best metric of the workspace, and the newest: both old defaults
    copy_bundle(
        source, tmp_path / "models" / "sound", archive=False, card=source.card.model_copy(update={"metrics": {}})
    )
    failed = copy_bundle(source, tmp_path / "models" / "collapsed", archive=False, card=collapsed)
    os.utime(failed / "card.json", (2e9, 2e9))
    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path))
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, at.exception
    assert at.sidebar.selectbox(key="model").value == "models/sound"
    at.sidebar.selectbox(key="model").select("models/collapsed").run()  # chosen by hand: allowed, with the reason
    assert any("failed its training's sanity check" in w.value for w in at.sidebar.warning)


def test_the_train_page_says_when_a_finished_run_failed_its_sanity_check(trained, tmp_path, monkeypatch):
    import json

    from inspekt.bundle import copy_bundle, open_bundle
    from inspekt.card import Sanity

    source = open_bundle(trained.bundle)
    card = source.card.model_copy(update={"sanity": Sanity(ok=False, why="predicts ok for every image")})
    copy_bundle(source, tmp_path / "runs" / "classify" / "collapsed" / "bundle", archive=False, card=card)
    jobs = tmp_path / "runs" / ".jobs"
    jobs.mkdir(parents=True)
    (jobs / "collapsed.json").write_text(json.dumps({"task": "classify", "pid": 2**22 + 7, "command": []}))
    at = _page(tmp_path, monkeypatch, "train", model="runs/classify/collapsed")
    assert "collapsed · classify · done" in " ".join(e.label for e in at.expander)
    assert any("failed its training's sanity check: predicts ok for every image" in w.value for w in at.warning)


def test_inspect_shows_the_model_s_notes_once_not_as_warnings(workspace, monkeypatch, tmp_path):
    from inspekt.bundle import copy_bundle, open_bundle

    source = open_bundle(workspace / "models" / "anomaly")
    notes = ("calibrated on normal images only: the threshold is a quantile", "trained at 32 px")
    copy_bundle(
        source, tmp_path / "models" / "noted", archive=False, card=source.card.model_copy(update={"notes": notes})
    )
    at = _page(tmp_path, monkeypatch, "inspect", model="models/noted")
    image = next((workspace / "data" / "surfaces-mvtec" / "test" / "scratch").glob("*.png"))
    at.text_input(key="image_path").input(str(image)).run()
    assert not at.exception, at.exception
    assert not [w.value for w in at.warning if any(n in w.value for n in notes)]  # was: 2 warnings per prediction
    assert "About this model (2 notes)" in [e.label for e in at.expander]


def test_inspect_flags_an_image_unlike_the_training_images(workspace, monkeypatch, tmp_path):
    import numpy as np

    from inspekt.io import save_image

    noise = save_image(tmp_path / "noise.png", np.random.default_rng(0).integers(0, 256, (48, 48, 3), np.uint8))
    at = _page(workspace, monkeypatch, "inspect")
    at.text_input(key="image_path").input(str(noise)).run()
    assert not at.exception, at.exception
    assert any("unlike the training images (score" in w.value for w in at.warning), [w.value for w in at.warning]
    usual = next((workspace / "data" / "surfaces" / "ok").glob("*.png"))
    at.text_input(key="image_path").input(str(usual)).run()
    assert not any("unlike the training images" in w.value for w in at.warning)
