"""The demo workspace: built once from synthetic data, reused on the next run."""

from inspekt import demo


def test_demo_builds_once_then_reuses(tmp_path, monkeypatch):
    monkeypatch.setattr(demo, "DATASETS", {"surfaces": ("classes", 40, 0), "surfaces-seg": ("segmentation", 8, 1),
                                          "surfaces-mvtec": ("mvtec", 8, 2), "incoming": ("classes", 8, 9)})
    monkeypatch.setattr(demo, "IMAGE_SIZE", 32)
    monkeypatch.setattr(demo, "IMGSZ", 32)
    monkeypatch.setattr(demo, "EPOCHS", 2)
    first = demo.build_demo(tmp_path / "ws")
    assert first.model.is_file() and first.model.suffix == ".inspekt"
    assert "data/surfaces-mvtec" in first.built and len(first.predictions) == 8
    assert (tmp_path / "ws/runs/classify/demo/results.csv").is_file()
    stamp = first.model.stat().st_mtime_ns
    again = demo.build_demo(tmp_path / "ws")
    assert again.built == [] and again.model.stat().st_mtime_ns == stamp
    assert [p.scores for p in again.predictions] == [p.scores for p in first.predictions]
