"""The demo workspace: built once from synthetic data, reused on the next run."""

import pytest


@pytest.mark.slow
def test_demo_builds_once_then_reuses(tmp_path, small_demo):
    demo = small_demo
    first = demo.build_demo(tmp_path / "ws")
    assert first.model.is_file() and first.model.suffix == ".inspekt"
    assert "data/surfaces-mvtec" in first.built and len(first.predictions) == 8
    assert (tmp_path / "ws/runs/classify/demo/results.csv").is_file()
    stamp = first.model.stat().st_mtime_ns
    again = demo.build_demo(tmp_path / "ws")
    assert again.built == [] and again.model.stat().st_mtime_ns == stamp
    assert [p.scores for p in again.predictions] == [p.scores for p in first.predictions]


@pytest.mark.slow
def test_demo_plants_listed_label_errors(tmp_path, small_demo):
    import csv

    small_demo.build_demo(tmp_path / "ws")
    with (tmp_path / "ws" / small_demo.PLANTED_LIST).open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == small_demo.PLANTED
    for row in rows:
        path = tmp_path / "ws" / row["path"]
        assert path.is_file() and path.parent.name == row["given_label"] != row["true_label"]
        assert path.name.startswith(row["true_label"] + "_")  # the file still says its true class
