"""inspekt monitor: drop folder, camera (video file), snapshot URL, windows and alerts, webhook
retries, the report, bad input, and a real kill -9 / restart of the CLI."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from inspekt.cli import app
from inspekt.errors import ConfigError
from inspekt.monitor import MonitorConfig, SourceError, history, parse_duration, run_monitor
from inspekt.monitor.alerts import post_webhook
from inspekt.monitor.sources import CameraSource, FolderSource

runner = CliRunner()


def _images(synth_classes: Path, per_class: int) -> list[Path]:
    """``per_class`` images of each class, interleaved (a window then has the training label mix)."""
    by_class = [sorted((Path(synth_classes) / c).glob("*.png"))[:per_class] for c in ("ok", "pore", "lop", "scratch")]
    return [files[i] for i in range(per_class) for files in by_class]


def _drop(folder: Path, files: list[Path], brighten: int = 0) -> Path:
    """Copy (optionally brightened) images into a drop folder, all old enough to be settled."""
    from inspekt.io import load_image, save_image

    folder.mkdir(parents=True, exist_ok=True)
    for i, src in enumerate(files):
        target = folder / f"{i:03d}_{src.name}"
        if brighten:
            save_image(target, np.clip(load_image(src, mode="keep").astype(int) + brighten, 0, 255).astype(np.uint8))
        else:
            shutil.copy(src, target)
        os.utime(target, (time.time() - 60, time.time() - 60 + i * 1e-3))
    return folder


def _rows(db: Path, table=history.images) -> list:
    engine = create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as connection:
            return list(connection.execute(select(table).order_by(table.c.id)))
    finally:
        engine.dispose()


def _config(trained, source, db, **kw) -> MonitorConfig:
    return MonitorConfig(
        **{
            "model": str(trained.bundle),
            "source": str(source),
            "db": str(db),
            "every": 0.02,
            "once": True,
            "settle": 0.2,
            **kw,
        }
    )


class _Server:
    """A real HTTP server on loopback in a thread; ``handler`` answers GET and POST."""

    def __init__(self, handler):
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


# --- pieces ---------------------------------------------------------------------------------


def test_durations_are_parsed_with_a_clear_error():
    assert parse_duration("500ms") == 0.5 and parse_duration("10s") == 10 and parse_duration("2m") == 120
    assert parse_duration("1.5") == 1.5 and parse_duration("1h") == 3600
    for bad in ("soon", "-1s", "0s", "10 parsecs", ""):
        with pytest.raises(ConfigError, match="not a duration; give a positive number with a unit"):
            parse_duration(bad)


def test_a_file_still_being_written_is_not_read(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "growing.png").write_bytes(b"\x89PNG partial")
    (folder / "upload.png.part").write_bytes(b"partial")
    source = FolderSource(folder, settle=0.3)
    assert list(source.poll(set())) == [] and source.waiting == 1
    time.sleep(0.35)
    (items,) = [list(source.poll(set()))]  # settled and unchanged since the previous look
    assert [i.item for i in items] == ["growing.png"] and items[0].data == b"\x89PNG partial"
    assert list(source.poll({"growing.png"})) == []


def test_a_file_name_that_is_not_utf8_is_recorded_once(trained, synth_classes, tmp_path):
    drop = _drop(tmp_path / "drop", _images(synth_classes, 1))
    odd = drop / os.fsdecode(b"cam\xff01.png")  # Latin-1 bytes from an SMB share: a lone surrogate in Python
    shutil.copy(next(drop.iterdir()), odd)
    os.utime(odd, (time.time() - 60, time.time() - 60))
    db = tmp_path / "h.db"
    first = run_monitor(_config(trained, drop, db))
    again = run_monitor(_config(trained, drop, db))
    assert (first.recorded, again.recorded) == (5, 0)
    assert "cam\\xff01.png" in {r.item for r in _rows(db)}


def test_an_image_unlike_the_training_images_is_recorded_said_and_reported(trained, synth_classes, tmp_path, caplog):
    """The Predictor flags a 1x1 picture (it was logged "ok 0.970" like any other); the monitor keeps the
    flag, says it when it reads the image, and its report lists it."""
    from inspekt.io import save_image
    from inspekt.monitor.summary import summarize

    drop = _drop(tmp_path / "drop", _images(synth_classes, 1))
    save_image(drop / "tiny.png", np.full((1, 1, 3), 120, np.uint8))
    os.utime(drop / "tiny.png", (time.time() - 60, time.time() - 60))
    db = tmp_path / "h.db"
    with caplog.at_level("INFO", logger="inspekt.monitor"):
        assert run_monitor(_config(trained, drop, db)).recorded == 5
    rows = {r.item: r for r in _rows(db)}
    assert rows["tiny.png"].ood["unlike_training"] and "1x1 px" in rows["tiny.png"].ood["why"]
    assert not any(r.ood and r.ood["unlike_training"] for item, r in rows.items() if item != "tiny.png")
    said = [m for m in caplog.messages if m.startswith("tiny.png: ")]
    assert said and "unlike the training images (score" in said[0] and "1x1 px" in said[0]
    summary = summarize(db)
    assert summary["unlike_training"] == 1 and summary["sources"][str(drop)]["unlike_training"] == 1
    assert [u["item"] for u in summary["unlike_training_items"]] == ["tiny.png"]
    shown = runner.invoke(app, ["monitor", "report", "--db", str(db)])
    assert shown.exit_code == 0 and "1 image(s) unlike the training images" in " ".join(shown.output.split())


def test_a_drop_folder_that_goes_away_for_a_while_is_looked_at_again(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    source = FolderSource(folder, settle=0.0)
    folder.rename(tmp_path / "away")  # a network share being remounted
    with pytest.raises(SourceError, match="cannot list the drop folder"):  # the loop logs it and tries again
        list(source.poll(set()))
    (tmp_path / "away").rename(folder)
    (folder / "a.png").write_bytes(b"x")
    os.utime(folder / "a.png", (time.time() - 60, time.time() - 60))
    assert [i.item for i in source.poll(set())] == ["a.png"]


@pytest.mark.slow
def test_webhook_is_retried_then_delivered_and_a_dead_one_is_given_up(tmp_path):
    received, answers = [], [500]

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(answers.pop(0) if answers else 200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = _Server(Hook)
    try:
        delivery = post_webhook(server.url + "/hook", {"event": "drift"}, attempts=3, backoff=0.01)
    finally:
        server.close()
    assert (delivery.status, delivery.attempts) == ("delivered", 2) and received == [{"event": "drift"}] * 2
    dead = post_webhook(server.url + "/hook", {"event": "drift"}, attempts=3, backoff=0.01)  # server is closed
    assert dead.status == "failed" and dead.attempts == 3 and dead.error


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.slow
def test_drop_folder_end_to_end_with_report(trained, synth_classes, tmp_path):
    drop = _drop(tmp_path / "drop", _images(synth_classes, 3))
    (drop / "broken.png").write_bytes(b"not an image")
    os.utime(drop / "broken.png", (time.time() - 60, time.time() - 60))
    db = tmp_path / "history.db"
    args = [
        "monitor",
        "--model",
        str(trained.bundle),
        "--source",
        str(drop),
        "--db",
        str(db),
        "--once",
        "--every",
        "20ms",
        "--window",
        "6",
        "-q",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "recorded 12 images, skipped 1; 2 drift windows" in result.output
    rows = _rows(db)
    assert sorted(r.item for r in rows) == sorted(p.name for p in drop.iterdir())
    bad = next(r for r in rows if r.item == "broken.png")
    assert bad.status == "skipped" and "not an image" in bad.reason
    good = [r for r in rows if r.status == "ok"]
    assert all(
        r.label in r.scores
        and 0 <= r.score <= 1
        and r.properties["brightness"] is not None
        and sum(r.histogram["grey"]) > 0
        for r in good
    )
    with sqlite3.connect(db) as connection:  # WAL: the app reads while the monitor writes
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    again = runner.invoke(app, args)  # nothing new: the bad file is not retried, nothing is taken twice
    assert again.exit_code == 0 and "recorded 0 images, skipped 0" in again.output
    assert len(_rows(db)) == 13

    report = runner.invoke(app, ["monitor", "report", "--db", str(db), "--json"])
    assert report.exit_code == 0, report.output
    summary = json.loads(report.stdout)
    assert summary["rows"] == 13 and summary["skipped"] == 1 and len(summary["windows"]) == 2
    assert summary["first"].endswith("+00:00") and summary["windows"][0]["time"].endswith("+00:00")
    assert abs(sum(summary["label_mix"].values()) - 1) < 1e-9 and summary["scores"]["n"] == 12
    table = runner.invoke(app, ["monitor", "report", "--db", str(db)])
    assert table.exit_code == 0 and "Monitoring history" in table.output and "Drift windows" in table.output
    named = runner.invoke(app, [*args, "--source-name", "[/b][red]"])  # a name that looks like Rich markup
    assert named.exit_code == 0, named.output
    table = runner.invoke(app, ["monitor", "report", "--db", str(db)])
    assert table.exit_code == 0 and "[/b][red]" in table.output, table.output
    out = tmp_path / "summary.json"
    assert runner.invoke(app, ["monitor", "report", "--db", str(db), "--out", str(out)]).exit_code == 0
    assert json.loads(out.read_text())["schema"] == "inspekt.monitor.report/1"


def test_the_windows_run_the_checks_asked_for(trained, synth_classes, tmp_path):
    """A line whose defect rate is not the training data's drifts on the label mix in every window; it can
    leave the prediction check out (--checks)."""
    drop = _drop(tmp_path / "drop", _images(synth_classes, 3))
    args = ["monitor", "--model", str(trained.bundle), "--source", str(drop), "--once", "--window", "6", "-q"]
    mine = runner.invoke(app, [*args, "--db", str(tmp_path / "a.db"), "--checks", "properties, pixels"])
    assert mine.exit_code == 0, mine.output
    default = runner.invoke(app, [*args, "--db", str(tmp_path / "b.db")])
    assert default.exit_code == 0, default.output
    asked = [set(w.checks) for w in _rows(tmp_path / "a.db", history.windows)]
    every = [set(w.checks) for w in _rows(tmp_path / "b.db", history.windows)]
    assert len(asked) == len(every) == 2
    assert all(not any(name.startswith("prediction") for name in checks) for checks in asked)
    assert all(any(name.startswith("prediction") for name in checks) for checks in every)
    assert all(any(name.startswith("pixel") for name in checks) for checks in asked)


@pytest.mark.slow
def test_brightness_shift_alerts_once_and_a_clean_window_does_not(trained, synth_classes, tmp_path):
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(503 if len(received) == 1 else 204)  # the first attempt fails
            self.end_headers()

        def log_message(self, *args):
            pass

    server = _Server(Hook)
    db, files = tmp_path / "h.db", _images(synth_classes, 5)
    try:
        clean = run_monitor(
            _config(trained, _drop(tmp_path / "clean", files), db, window=20, webhook=server.url, webhook_backoff=0.01)
        )
        shifted = run_monitor(
            _config(
                trained,
                _drop(tmp_path / "bright", files, brighten=90),
                db,
                window=20,
                webhook=server.url,
                webhook_backoff=0.01,
            )
        )
    finally:
        server.close()
    assert (clean.windows, clean.drifted_windows) == (1, 0)
    assert (shifted.windows, shifted.drifted_windows) == (1, 1)
    windows = _rows(db, history.windows)
    assert [w.drift for w in windows] == [False, True] and "brightness" in windows[1].drifted
    assert windows[1].checks["brightness"]["p_adjusted"] <= 0.05
    assert [r["window"]["id"] for r in received] == [windows[1].id] * 2 and "brightness" in received[0]["drifted"]
    assert received[0]["time"].endswith("+00:00")  # ISO 8601 in UTC, though SQLite keeps no zone
    alerts = {(a.channel, a.status, a.attempts) for a in _rows(db, history.alerts)}
    assert alerts == {("log", "delivered", 1), ("webhook", "delivered", 2)}


@pytest.mark.slow
def test_a_webhook_added_later_is_not_sent_the_windows_already_alerted(trained, synth_classes, tmp_path):
    received = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    db, files = tmp_path / "h.db", _images(synth_classes, 3)
    drop = _drop(tmp_path / "bright", files, brighten=90)
    assert run_monitor(_config(trained, drop, db, window=6)).drifted_windows == 2  # alerted in the log only
    with history.open_engine(db).begin() as connection:  # a run killed after recording a window, before alerting
        connection.execute(
            history.windows.insert().values(
                time=history.now(),
                source=str(drop),
                model=str(trained.bundle),
                first_image=90,
                last_image=99,
                n=6,
                drift=True,
                drifted=["brightness"],
                checks={},
                label_mix={},
                notes=[],
            )
        )
    server = _Server(Hook)
    try:
        run_monitor(_config(trained, drop, db, window=6, webhook=server.url, webhook_backoff=0.01))
    finally:
        server.close()
    windows = _rows(db, history.windows)
    assert [r["window"]["id"] for r in received] == [windows[-1].id]  # the unalerted one only, not the two logged
    alerts = [(a.window_id, a.channel) for a in _rows(db, history.alerts)]
    assert alerts == [
        (windows[0].id, "log"),
        (windows[1].id, "log"),
        (windows[2].id, "webhook"),
        (windows[2].id, "log"),
    ]


def test_camera_source_reads_a_video_file_and_resumes_after_a_restart(trained, tmp_path):
    import cv2

    video = tmp_path / "line.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (48, 48))
    for i in range(7):
        writer.write(np.full((48, 48, 3), 30 * i, np.uint8))
    writer.release()
    db = tmp_path / "cam.db"
    first = run_monitor(_config(trained, f"camera:{video}", db, window=50, max_images=4))
    rest = run_monitor(_config(trained, f"camera:{video}", db, window=50))
    assert (first.recorded, rest.recorded) == (4, 3)
    rows = _rows(db)
    assert [r.item for r in rows] == [f"frame {i}" for i in range(7)]
    brightness = [r.properties["brightness"] for r in rows]
    assert brightness == sorted(brightness) and brightness[0] < brightness[-1]  # the frames, in order, none repeated
    camera = CameraSource(f"camera:{video}", 7)  # at its end, a file is done; a device would have stopped sending
    assert list(camera.poll(set())) == [] and camera.ended
    camera.is_file = False
    with pytest.raises(SourceError, match="the camera gave no frame"):  # the loop logs it and tries again
        list(camera.poll(set()))
    camera.close()


@pytest.mark.slow
def test_snapshot_url_is_captured_every_tick(trained, synth_classes, tmp_path):
    png = next((Path(synth_classes) / "pore").glob("*.png")).read_bytes()

    class Snap(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args):
            pass

    server = _Server(Snap)
    db = tmp_path / "url.db"
    try:
        stats = run_monitor(_config(trained, server.url + "/snapshot.png", db, window=50, max_images=3, once=False))
    finally:
        server.close()
    rows = _rows(db)
    assert stats.recorded == 3 and [r.item for r in rows] == ["snapshot 0", "snapshot 1", "snapshot 2"]
    assert len({r.time for r in rows}) == 3 and all(r.source == server.url + "/snapshot.png" for r in rows)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "ftp://host/x"], "unknown kind of source"),
        (["--source", "{tmp}/missing"], "no such folder"),
        (["--source", "{tmp}/no-reference/card.json"], "is a file, not a folder; give the drop folder"),
        (["--source", "{tmp}", "--db", "{tmp}"], "is a folder; give the history's file, e.g."),
        (["--source", "camera:{tmp}/nothing.avi"], "no camera index or video file"),
        (["--source", "camera:97"], "cannot open this camera"),
        (["--source", "http://127.0.0.1:9/snap.png"], "cannot reach it"),
        (["--source", "{tmp}", "--db", "nosuchdb://x"], "not a usable database URL"),
        (["--source", "{tmp}", "--every", "often"], "--every 'often': not a duration"),
        (["--source", "{tmp}", "--model", "{tmp}/no-model.inspekt"], "no-model.inspekt"),
        (["--source", "{tmp}", "--window", "1"], "--window 1"),
        (["--source", "{tmp}", "--alpha", "2"], "alpha must be between 0 and 1"),
        (["--source", "{tmp}", "--checks", "pixels,embeddings"], "--checks embeddings: a monitor's windows can check"),
        (["--source", "{tmp}", "--checks", "pixel"], 'Did you mean "pixels"?'),
        (["--source", "s3://bucket/incoming"], "sync it to a local folder"),
        (["--source", "{tmp}", "--model", "{tmp}/no-reference"], "no-reference: this bundle has no reference.json"),
    ],
)
def test_bad_input_is_one_clear_line(trained, tmp_path, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    shutil.copytree(trained.bundle, tmp_path / "no-reference")
    (tmp_path / "no-reference" / "reference.json").unlink()
    model = [] if "--model" in args else ["--model", str(trained.bundle)]
    db = [] if "--db" in args else ["--db", str(tmp_path / "h.db")]
    result = runner.invoke(app, ["monitor", *model, *db, *args, "--once"])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert result.output.count("error:") == 1
    assert not list(tmp_path.glob("h.db*"))  # a monitor that cannot start leaves no empty history file


def test_a_workspace_at_a_storage_url_needs_an_explicit_database(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("INSPEKT_WORKSPACE", "s3://bucket/workspace")
    result = runner.invoke(app, ["monitor", "--model", str(trained.bundle), "--source", str(tmp_path), "--once"])
    assert result.exit_code == 2 and "cannot live at a storage URL; give --db" in result.output
    assert not (tmp_path / "s3:").exists()  # no local folder named after the URL
    monkeypatch.setenv("INSPEKT_WORKSPACE", f"file://{tmp_path}/ws")
    assert history.default_url() == f"sqlite:///{tmp_path}/ws/monitor.db"


def test_report_on_a_missing_database_says_how_to_start(tmp_path):
    result = runner.invoke(app, ["monitor", "report", "--db", str(tmp_path / "none.db")])
    assert result.exit_code == 2 and "no monitoring history there yet" in result.output


@pytest.mark.slow
def test_kill_9_mid_run_then_restart_records_every_file_exactly_once(trained, synth_classes, tmp_path):
    files = _images(synth_classes, 20) * 2  # 160 images: killed at 30 rows, a fast monitor is still mid-run
    drop, db = _drop(tmp_path / "drop", files), tmp_path / "crash.db"
    cmd = [
        sys.executable,
        "-m",
        "inspekt",
        "monitor",
        "--model",
        str(trained.bundle),
        "--source",
        str(drop),
        "--db",
        str(db),
        "--once",
        "--every",
        "10ms",
        "--window",
        "25",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 120  # generous: a loaded CI machine
    while time.monotonic() < deadline and process.poll() is None:
        if db.is_file() and len(_safe_rows(db)) >= 30:  # past the first window
            break
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = len(_rows(db))
    assert 30 <= before < 160, f"the monitor was killed after {before} rows; it should have been mid-run"
    restart = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert restart.returncode == 0, restart.stderr
    assert f"recorded {160 - before} images, skipped 0" in restart.stderr  # nothing redone, nothing left
    assert "another monitor" not in restart.stderr
    rows = _rows(db)
    assert sorted(r.item for r in rows) == sorted(p.name for p in drop.iterdir())  # each exactly once
    assert all(r.status == "ok" and r.label and r.scores and r.properties and r.histogram for r in rows)
    windows = _rows(db, history.windows)
    assert [(w.first_image, w.last_image, w.n) for w in windows] == [
        (rows[25 * k].id, rows[25 * k + 24].id, 25) for k in range(6)
    ]


def _safe_rows(db: Path) -> list:
    try:
        return _rows(db)
    except Exception:
        return []


@pytest.mark.slow
def test_a_detector_window_records_and_checks_its_boxes(detect_trained, planted_boxes, tmp_path):
    from inspekt.io import save_image

    rng = np.random.default_rng(7)
    drop = tmp_path / "drop"
    for i in range(20):  # the training images' dark noise without a bright square: no boxes to find
        save_image(drop / f"e{i:02d}.png", rng.integers(20, 60, (64, 64), dtype=np.uint8))
    db = tmp_path / "h.db"
    assert run_monitor(_config(detect_trained, drop, db, window=20)).windows == 1
    rows = _rows(db, history.images)
    assert len(rows) == 20 and all(set(r.outputs) == {"box_counts", "box_sizes"} for r in rows)
    checks = _rows(db, history.windows)[0].checks
    assert "prediction:box_count" in checks and "prediction:box_size" in checks
    assert checks["prediction:box_count"]["drifted"], checks["prediction:box_count"]
