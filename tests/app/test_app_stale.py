"""Nothing stale, nothing silent (issue 19), through Streamlit's AppTest: every page's result is tied
to the model, input and settings that produced it and says which model produced it; the model
picker lists each bundle once and starts on the user's last choice, else the best evaluated one."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from inspekt.app import MAIN
from inspekt.app.common import WORKSPACE_ENV, md
from inspekt.app.picker import SETTINGS_FILE

TIMEOUT = 120
CLASSES = {"lop", "ok", "pore", "scratch"}


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory) -> Path:
    """A tiny segmenter's bundle folder (2 epochs on 24 synthetic surfaces)."""
    from inspekt.data.synth import write_dataset
    from inspekt.engine.trainer import train

    seg = write_dataset(tmp_path_factory.mktemp("seg-data") / "seg", n=24, size=48, seed=4, layout="segmentation")
    result = train(
        task="segment",
        data=str(seg.root),
        model="tiny_unet",
        model_params={"width": 4, "depth": 3},
        epochs=2,
        imgsz=32,
        batch=8,
        augment="none",
        threads=1,
        out=str(tmp_path_factory.mktemp("seg-runs")),
    )
    return Path(result.bundle)


@pytest.fixture(scope="module")
def workspace(trained, segmenter, synth_classes, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stale-ws")
    shutil.copytree(trained.bundle, root / "models" / "classifier")
    shutil.copytree(segmenter, root / "models" / "segmenter")
    shutil.copytree(synth_classes, root / "data" / "surfaces")
    shutil.copytree(Path(synth_classes) / "pore", root / "data" / "incoming" / "pore")
    return root


def _app(root: Path, monkeypatch, page: str = "inspect", model: str | None = "models/classifier") -> AppTest:
    monkeypatch.setenv(WORKSPACE_ENV, str(root))
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    if model is not None:
        at.session_state["model"] = model
    at.run()
    if page != "inspect":
        at.switch_page(f"views/{page}.py").run()
    assert not at.exception, at.exception
    return at


def _switch(at: AppTest, model: str) -> AppTest:
    at.sidebar.selectbox(key="model").select(model).run()
    assert not at.exception, at.exception
    return at


def _captions(at: AppTest) -> str:
    return "\n".join(str(c.value) for c in at.caption)


def _copy(bundle: Path, out: Path, *, archive: bool = False, metrics: dict | None = None) -> Path:
    from inspekt.bundle import copy_bundle, open_bundle

    source = open_bundle(bundle)
    card = source.card.model_copy(update={"metrics": metrics}) if metrics is not None else None
    return copy_bundle(source, out, archive=archive, card=card)


def test_the_picker_lists_a_bundle_and_its_copies_once(trained, segmenter, tmp_path, monkeypatch):
    """The demo keeps each model as models/<name>.inspekt and runs/<task>/demo/bundle: one entry."""
    _copy(trained.bundle, tmp_path / "models" / "surface-classifier.inspekt", archive=True)
    shutil.copytree(trained.bundle, tmp_path / "runs" / "classify" / "demo" / "bundle")
    shutil.copytree(segmenter, tmp_path / "runs" / "segment" / "demo" / "bundle")
    at = _app(tmp_path, monkeypatch, model=None)
    assert sorted(at.sidebar.selectbox(key="model").options) == [
        "models/surface-classifier.inspekt",
        "runs/segment/demo",
    ]


def test_the_picker_starts_on_the_best_evaluated_then_on_the_last_choice(trained, segmenter, tmp_path, monkeypatch):
    _copy(trained.bundle, tmp_path / "models" / "good", metrics={"val_accuracy": 0.9})
    newer = _copy(segmenter, tmp_path / "models" / "newer", metrics={"val_defect_iou": 0.2})
    os.utime(newer / "card.json", (2e9, 2e9))  # the newest bundle: the old default
    assert _app(tmp_path, monkeypatch, model=None).sidebar.selectbox(key="model").value == "models/good"
    _switch(_app(tmp_path, monkeypatch, model=None), "models/newer")
    assert json.loads((tmp_path / SETTINGS_FILE).read_text())["label"] == "models/newer"
    assert _app(tmp_path, monkeypatch, model=None).sidebar.selectbox(key="model").value == "models/newer"


@pytest.mark.slow
def test_batch_forgets_the_classifier_s_table_when_the_segmenter_is_chosen(workspace, monkeypatch):
    at = _app(workspace, monkeypatch, "batch")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert set(at.dataframe[0].value["label"]) <= CLASSES
    assert f"by {md('models/classifier')} · " in _captions(at)
    _switch(at, "models/segmenter")
    assert not at.dataframe, "the classifier's labels are shown under the segmenter's name"
    assert "by " not in _captions(at)
    at.button[0].click().run()
    assert not (set(at.dataframe[0].value["label"]) & {"lop", "pore", "scratch"})
    assert f"by {md('models/segmenter')} · " in _captions(at)
    at.sidebar.toggle(key="enh_on_clahe").set_value(True).run()  # new settings: the table is cleared
    assert not at.dataframe


@pytest.mark.slow
def test_evaluate_forgets_its_metrics_when_the_dataset_or_the_model_changes(workspace, monkeypatch):
    at = _app(workspace, monkeypatch, "evaluate")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert "accuracy" in [m.label for m in at.metric]
    assert f"by {md('models/classifier')} · " in _captions(at)
    at.text_input[0].input(str(workspace / "data" / "incoming")).run()
    assert not at.metric, "metrics of another dataset are shown"
    at.text_input[0].input(str(workspace / "data" / "surfaces")).run()
    at.button[0].click().run()
    assert at.metric
    _switch(at, "models/segmenter")
    assert not at.metric


@pytest.mark.slow
def test_drift_forgets_its_verdict_when_the_model_or_alpha_changes(workspace, monkeypatch):
    at = _app(workspace, monkeypatch, "drift")
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert at.dataframe and f"by {md('models/classifier')} · " in _captions(at)
    _switch(at, "models/segmenter")  # the reference is the model's training profile: another model, another check
    assert not at.dataframe, "the classifier's drift verdict is shown under the segmenter's name"
    at.button[0].click().run()
    assert at.dataframe and f"by {md('models/segmenter')} · " in _captions(at)
    at.select_slider[0].set_value(0.01).run()
    assert not at.dataframe


@pytest.mark.slow
def test_inspect_says_which_model_answered(workspace, monkeypatch):
    at = _app(workspace, monkeypatch)
    image = next((workspace / "data" / "incoming" / "pore").glob("*.png"))
    at.text_input(key="image_path").input(str(image)).run()
    assert not at.exception, at.exception
    assert f"by {md('models/classifier')} · " in _captions(at) and f"on {md(image)}" in _captions(at)
    _switch(at, "models/segmenter")
    assert f"by {md('models/segmenter')} · " in _captions(at)
    assert any("largest defect probability" in m.value for m in at.markdown)
