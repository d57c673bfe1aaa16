"""The Review page's queues (curate.review): which images each source puts in front of a person."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import png_bytes
from inspekt.curate import review
from inspekt.data import open_dataset


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "parts"
    for label in ("ok", "crack"):
        (root / label).mkdir(parents=True)
        for k in range(3):
            (root / label / f"{label}{k}.png").write_bytes(png_bytes(np.full((8, 8), 30 * k, np.uint8)))
    return root


def test_issues_are_queued_in_rank_order_and_unknown_paths_reported(tmp_path):
    from inspekt.curate.issues import DataIssue, write_issues_csv

    root = _folder(tmp_path)
    issues = [
        DataIssue(2, "ok/ok1.png", None, "label", 0.6, "ok", "crack", "second"),
        DataIssue(1, str(root / "crack" / "crack2.png"), None, "outlier", 0.9, "crack", None, "first"),
        DataIssue(3, "../parts/ok/ok1.png", None, "duplicate", 0.5, "ok", None, "same image again"),
        DataIssue(4, "ok/gone.png", None, "label", 0.4, "ok", "crack", "deleted since"),
        DataIssue(5, "elsewhere/parts/crack/crack0.png", None, "label", 0.3, "crack", "ok", "from another folder"),
    ]
    (tmp_path / "reports").mkdir()
    csv_path = write_issues_csv(issues, tmp_path / "reports" / "issues.csv")
    queue = review.from_issues(csv_path, open_dataset(root))
    assert [item.sample.path.name for item in queue.items] == ["crack2.png", "ok1.png", "crack0.png"]  # ok1 once
    assert "first" in queue.items[0].why and queue.items[1].suggested == "crack"
    assert queue.missing == ["ok/gone.png"]
    assert queue.kinds == {"label", "outlier", "duplicate"}  # the app's Review page picks the task from these


def test_the_errors_are_the_rows_the_model_got_wrong(tmp_path):
    root = _folder(tmp_path)
    rows = [
        {"path": str(root / "ok/ok0.png"), "true": "ok", "predicted": "crack", "correct": False},
        {"path": str(root / "ok/ok1.png"), "true": "ok", "predicted": "ok", "correct": True},
        {"path": str(root / "crack/crack0.png"), "defective": True, "verdict": False, "score": 0.1},  # a missed defect
        {"path": str(root / "crack/crack1.png"), "defective": True, "verdict": True, "score": 0.9},
    ]
    queue = review.from_evaluation(SimpleNamespace(rows=rows), open_dataset(root))
    assert [item.sample.path.name for item in queue.items] == ["ok0.png", "crack0.png"]
    assert queue.items[0].suggested == "crack" and "predicted crack" in queue.items[0].why
    # the label under review is not called "true": the queue is there because it may be the wrong one
    assert queue.items[0].why.startswith("model and label disagree: labelled ok, predicted crack")


def test_predictions_nearest_the_decision_come_first(trained, synth_classes):
    from inspekt.engine.predictor import Predictor

    predictor = Predictor.load(trained.bundle)
    dataset = open_dataset(synth_classes)
    queue = review.near_threshold(predictor, dataset, limit=5)
    margins = []
    for prediction in predictor.predict([s.path for s in dataset.samples]):
        top = prediction.top(2)
        margins.append((top[0][1] - top[1][1], Path(prediction.source).name))
    assert [item.sample.path.name for item in queue.items] == [name for _, name in sorted(margins)[:5]]


def test_the_monitor_queue_holds_the_images_of_drifted_windows(tmp_path):
    from inspekt.monitor import history

    root = _folder(tmp_path)
    engine = history.open_engine(f"sqlite:///{tmp_path / 'monitor.db'}")
    ids = [
        history.record_image(engine, history.ImageRow(str(root), f"ok/ok{k}.png", "m", verdict="ok")) for k in range(3)
    ]
    ids += [history.record_image(engine, history.ImageRow(str(root), "crack/crack0.png", "m", verdict="crack"))]
    window = {"source": str(root), "model": "m", "n": 2, "drifted": ["brightness"]}
    history.record_window(engine, window | {"first_image": ids[0], "last_image": ids[1], "drift": False})
    history.record_window(engine, window | {"first_image": ids[2], "last_image": ids[3], "drift": True})
    engine.dispose()
    queue = review.monitor_flagged(tmp_path / "monitor.db", open_dataset(root))
    assert [item.sample.path.name for item in queue.items] == ["ok2.png", "crack0.png"]
    assert "brightness" in queue.items[0].why and "model said ok" in queue.items[0].why


@pytest.mark.parametrize("named", ["bundle", "elsewhere"])
def test_the_old_run_of_a_bundle_is_its_run_folder(trained, tmp_path, named):
    import shutil

    if named == "bundle":
        assert review.old_run(trained.bundle) == trained.run_dir
    else:  # a copy, as the demo's models/*.inspekt: found through the workspace's runs by its model.onnx
        from inspekt.bundle import copy_bundle, open_bundle

        copy = copy_bundle(open_bundle(trained.bundle), tmp_path / "models" / "classifier.inspekt")
        assert review.old_run(copy) is None  # no workspace to look in
        workspace = tmp_path / "ws"
        decoy = shutil.copytree(trained.run_dir, workspace / "runs" / "classify" / "a-decoy")  # sorts first
        other = open_bundle(decoy / "bundle")
        copy_bundle(other, decoy / "bundle", archive=False, overwrite=True, replace={"model.onnx": b"another graph"})
        shutil.copytree(trained.run_dir, workspace / "runs" / "classify" / "first")
        assert review.old_run(copy, workspace) == workspace / "runs" / "classify" / "first"
        other = tmp_path / "other"
        (other / "runs" / "classify").mkdir(parents=True)
        assert review.old_run(copy, other) is None
