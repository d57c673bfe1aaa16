"""The Review page, run headless with Streamlit's AppTest: queues, fixes written to corrections.csv,
results tied to their model and image. (The brush, the keys and the retrain: test_app_browser_review.py.)"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
from streamlit.testing.v1 import AppTest

from inspekt.app import MAIN
from inspekt.app.common import WORKSPACE_ENV

TIMEOUT = 120


@pytest.fixture(scope="module")
def review_workspace(trained, synth_classes, tmp_path_factory) -> Path:
    """The session's tiny classifier as a run of the workspace (runs/classify/base) and its images."""
    root = tmp_path_factory.mktemp("review-ws")
    shutil.copytree(trained.run_dir, root / "runs" / "classify" / "base")
    shutil.copytree(synth_classes, root / "data" / "surfaces")
    return root


@pytest.fixture
def workspace(review_workspace, tmp_path) -> Path:
    """A fresh copy per test: each one writes its own corrections."""
    root = tmp_path / "ws"
    shutil.copytree(review_workspace, root)
    return root


def _page(workspace: Path, monkeypatch) -> AppTest:
    monkeypatch.setenv(WORKSPACE_ENV, str(workspace))
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    at.session_state["model"] = "runs/classify/base"
    at.run()
    at.switch_page("views/review.py").run()
    assert not at.exception, at.exception
    return at


def _texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [i.value for i in at.info]
    parts += [s.value for s in at.success] + [e.value for e in at.error]
    return "\n".join(str(p) for p in parts)


def _issues(workspace: Path, names: list[str]) -> Path:
    from inspekt.curate.issues import DataIssue, write_issues_csv

    issues = [
        DataIssue(rank, name, None, "label", 0.9 - rank / 10, name.split("/")[0], "scratch", "looks like a scratch")
        for rank, name in enumerate(names, start=1)
    ]
    return write_issues_csv(issues, workspace / "issues.csv")


def _corrections(workspace: Path) -> list[dict]:
    with (workspace / "data" / "surfaces" / ".inspekt-corrections" / "corrections.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_an_issues_queue_is_walked_and_each_fix_is_one_row(workspace, monkeypatch):
    ok = sorted(p.name for p in (workspace / "data" / "surfaces" / "ok").glob("*.png"))
    issues = _issues(workspace, [f"ok/{ok[0]}", f"ok/{ok[1]}", "ok/not-there.png"])
    at = _page(workspace, monkeypatch)
    at.text_input(key="review_data").input(str(workspace / "data" / "surfaces")).run()
    at.text_input(key="review_issues").input(str(issues)).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    text = _texts(at)
    assert "2 image(s) to review" in text and "not-there.png" in text
    assert "1 / 2" in text and ok[0] in text and "looks like a scratch" in text
    assert "by runs/classify/base" in text  # the prediction says which model made it ...
    assert text.split("by runs/classify/base")[1].split("\n")[0].replace("\\", "").endswith(f"on ok/{ok[0]}")
    at.button(key="relabel-scratch").click().run()
    assert "2 / 2" in _texts(at)
    next(b for b in at.button if b.label == "Exclude / include").click().run()
    assert "Queue done" in _texts(at)
    rows = _corrections(workspace)
    assert [(r["path"], r["field"], r["old"], r["new"]) for r in rows] == [
        (f"ok/{ok[0]}", "label", "ok", "scratch"),
        (f"ok/{ok[1]}", "exclude", "false", "true"),
    ]
    next(b for b in at.button if b.label == "Back").click().run()
    next(b for b in at.button if b.label == "Undo").click().run()
    assert "undid the exclude fix" in _texts(at)
    assert _corrections(workspace)[-1]["action"] == "undo"
    at.button[0].click().run()  # the queue again, built while the relabel is in force
    assert "label: scratch" in _texts(at)
    next(b for b in at.button if b.label == "Undo").click().run()
    assert "label: ok" in _texts(at)  # back to what the files say


@pytest.mark.slow
def test_a_label_queue_asks_for_a_classifier_when_the_sidebar_holds_another_task(workspace, monkeypatch, tmp_path):
    """An anomaly model chosen after building a label queue neither answers its images nor retrains its data."""
    from inspekt.data.synth import write_dataset
    from inspekt.engine.trainer import train

    mvtec = write_dataset(tmp_path / "mv", n=24, size=32, seed=2, layout="mvtec").root
    anomaly = train(task="anomaly", data=str(mvtec), model="padim", imgsz=32, out=str(tmp_path / "runs"), threads=1)
    shutil.copytree(anomaly.bundle, workspace / "models" / "anomaly")
    ok = sorted(p.name for p in (workspace / "data" / "surfaces" / "ok").glob("*.png"))
    at = _page(workspace, monkeypatch)
    at.text_input(key="review_data").input(str(workspace / "data" / "surfaces")).run()
    at.text_input(key="review_issues").input(str(_issues(workspace, [f"ok/{ok[0]}"]))).run()
    at.button[0].click().run()
    assert "1 / 1" in _texts(at)
    at.session_state["model"] = "models/anomaly"
    at.run()
    assert not at.exception, at.exception
    warning = "This queue holds classify data, and the sidebar's model was trained for anomaly: choose a classify"
    assert any(warning in w.value for w in at.warning), [w.value for w in at.warning]
    assert "1 / 1" not in _texts(at) and not any(b.label == "Retrain with corrections" for b in at.button)


@pytest.mark.slow
def test_the_errors_queue_holds_the_images_the_evaluation_got_wrong(workspace, monkeypatch, trained):
    from inspekt.engine.evaluator import evaluate

    data = workspace / "data" / "surfaces"
    wrong = {Path(r["path"]).name for r in evaluate(trained.bundle, data, split="all").rows if not r["correct"]}
    at = _page(workspace, monkeypatch)
    at.text_input(key="review_data").input(str(data)).run()
    at.selectbox(key="review_source").select("errors").run()
    at.selectbox(key="review_split").select("all").run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    assert f"{len(wrong)} image(s) to review" in _texts(at)
    if wrong:
        shown = _texts(at).split(" · ")[1].strip("`")
        assert shown in wrong


def test_a_drawn_mask_becomes_the_image_s_mask(tmp_path):
    """The canvas's strokes (brush red, eraser blue; the last drawn on top) over the current mask."""
    from inspekt.curate.review import mask_from_strokes

    strokes = np.zeros((20, 40, 4), np.uint8)  # a canvas at half the image's size
    strokes[2:6, 4:10] = (255, 0, 0, 255)  # brush
    strokes[10:20, 0:4] = (0, 0, 255, 255)  # eraser
    before = np.zeros((40, 80), np.uint8)
    before[20:40, 0:20] = 1
    after = mask_from_strokes(strokes, before, (40, 80))
    assert after[4:12, 8:20].all() and after[:4].sum() == 0  # painted, scaled up x2
    assert after[20:40, 0:8].sum() == 0 and after[20:40, 8:20].all()  # erased only where the eraser went
    assert mask_from_strokes(np.zeros((20, 40, 4), np.uint8), before, (40, 80)) is None


@pytest.mark.slow
def test_grad_cam_shows_beside_the_answer(workspace, monkeypatch):
    from inspekt.curate.issues import DataIssue, write_issues_csv

    write_issues_csv(
        [DataIssue(1, "pore/pore_0000.png", None, "label", 0.9, "pore", None, "?")], workspace / "issues.csv"
    )
    at = _page(workspace, monkeypatch)
    at.button[0].click().run()
    at.toggle(key="review_gradcam").set_value(True).run()
    assert not at.exception, at.exception
    assert "gradcam for" in _texts(at)


@pytest.fixture(scope="module")
def segmenter_workspace(tmp_path_factory) -> Path:
    """A tiny segmenter as a run of the workspace and its images with masks."""
    from inspekt.data.synth import write_dataset
    from inspekt.engine.trainer import train

    root = tmp_path_factory.mktemp("review-seg-ws")
    data = write_dataset(root / "data" / "surfaces", n=16, size=32, seed=4, layout="segmentation").root
    result = train(
        task="segment",
        data=str(data),
        model="tiny_unet",
        model_params={"width": 4, "depth": 3},
        epochs=1,
        imgsz=32,
        batch=8,
        augment="none",
        threads=1,
        out=str(root / "runs-tmp"),
    )
    shutil.copytree(result.run_dir, root / "runs" / "segment" / "seg")
    return root


@pytest.mark.slow
def test_a_segmenter_s_queue_shows_the_mask_and_the_model_s_map(segmenter_workspace, monkeypatch):
    monkeypatch.setenv(WORKSPACE_ENV, str(segmenter_workspace))
    at = AppTest.from_file(str(MAIN), default_timeout=TIMEOUT)
    at.session_state["model"] = "runs/segment/seg"
    at.run()
    at.switch_page("views/review.py").run()
    at.selectbox(key="review_source").select("threshold").run()
    at.number_input(key="review_limit").set_value(3).run()
    at.button[0].click().run()
    assert not at.exception, at.exception
    text = _texts(at)
    assert "3 image(s) to review" in text and "margin" in text
    assert "the model's map" in text and "by runs/segment/seg" in text
