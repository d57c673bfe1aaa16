"""Issue 18 (monitor hardening), each through a real front door: the ``inspekt`` CLI in a subprocess,
a real PostgreSQL server stopped and started mid-run, real damaged SQLite files, the app page."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

INSPEKT = [sys.executable, "-m", "inspekt"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _inspekt(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*INSPEKT, *args], capture_output=True, text=True, env=ENV, timeout=timeout)


def _monitor(trained, source: str | Path, db: Path, *args: str) -> subprocess.CompletedProcess:
    return _inspekt("monitor", "--model", str(trained.bundle), "--source", str(source), "--db", str(db), *args)


def _one_error_line(result: subprocess.CompletedProcess) -> str:
    """The CLI's single ``error:`` line (exit 2, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


# --- 4: camera:<not a video> -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text, why",
    [
        ("not a video\n", "OpenCV cannot open it"),
        ("line of notes\n" * 400, "it is text"),  # FFmpeg opens this and renders it as frames of ANSI art
    ],
)
def test_a_camera_source_that_is_no_video_fails_naming_it(trained, tmp_path, text, why):
    notes = tmp_path / "notes.txt"
    notes.write_text(text)
    db = tmp_path / "h.db"
    line = _one_error_line(_monitor(trained, f"camera:{notes}", db, "--once"))
    assert f"camera:{notes}" in line and f"not a video file that can be opened ({why})" in line
    assert not db.exists()  # a monitor that cannot start leaves no empty history


# --- 2: a damaged SQLite history -------------------------------------------------------------


def _history(trained, synth_classes, tmp_path) -> Path:
    """A real history written by the monitor (a few images), closed."""
    drop = tmp_path / "drop"
    drop.mkdir()
    for i, src in enumerate(sorted(Path(synth_classes).glob("*/*.png"))[:40]):
        shutil.copy(src, drop / f"{i:03d}.png")
        os.utime(drop / f"{i:03d}.png", (time.time() - 60, time.time() - 60))
    db = tmp_path / "history.db"
    result = _inspekt("monitor", "--model", str(trained.bundle), "--source", str(drop), "--db", str(db), "--once", "-q")
    assert result.returncode == 0, result.stderr
    return db


def _damage(db: Path) -> None:
    """Overwrite a page in the middle of the file with junk (a disk fault, a bad copy)."""
    with sqlite3.connect(db) as connection:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = db.stat().st_size
    assert size >= 4 * 4096, size
    with db.open("r+b") as file:
        file.seek(size // 2 - 4096 // 2)
        file.write(b"\xa5" * 4096)


@pytest.fixture
def damaged(trained, synth_classes, tmp_path) -> Path:
    db = _history(trained, synth_classes, tmp_path)
    _damage(db)
    return db


def _names_the_file(line: str, db: Path) -> None:
    assert str(db) in line and "damaged" in line and "backup" in line, line


def test_monitor_refuses_a_damaged_history(trained, damaged, tmp_path):
    before = damaged.read_bytes()
    _names_the_file(_one_error_line(_monitor(trained, tmp_path / "drop", damaged, "--once")), damaged)
    assert damaged.read_bytes() == before  # nothing written into it, nothing deleted


def test_report_on_a_damaged_history_is_one_clear_line(damaged):
    _names_the_file(_one_error_line(_inspekt("monitor", "report", "--db", str(damaged))), damaged)


def test_a_file_that_is_no_database_is_one_clear_line(trained, tmp_path):
    db, content = tmp_path / "history.db", b"these are notes, not a database\n" * 200
    db.write_bytes(content)
    _names_the_file(_one_error_line(_inspekt("monitor", "report", "--db", str(db))), db)
    _names_the_file(_one_error_line(_monitor(trained, tmp_path, db, "--once")), db)
    assert db.read_bytes() == content and sorted(p.name for p in tmp_path.iterdir()) == ["history.db"]


def test_the_app_monitor_page_shows_a_damaged_history_as_one_message(damaged, tmp_path, monkeypatch):
    pytest.importorskip("streamlit")
    from streamlit.testing.v1 import AppTest

    from inspekt.app import MAIN
    from inspekt.app.common import WORKSPACE_ENV

    monkeypatch.setenv(WORKSPACE_ENV, str(tmp_path / "workspace"))
    at = AppTest.from_file(str(MAIN), default_timeout=60)
    at.run()
    at.switch_page("views/monitor.py").run()
    at.text_input(key="monitor_db").input(str(damaged)).run()
    assert not at.exception, at.exception
    (error,) = [e.value for e in at.error]
    _names_the_file(error, damaged)


# --- 3: a file whose writer paused mid-write -------------------------------------------------


def _items(db: Path) -> list[tuple[str, str]]:
    """(item, status) of every image row (none while the monitor has not made the history yet)."""
    try:
        with closing(sqlite3.connect(db, timeout=10)) as connection:
            return list(connection.execute("SELECT item, status FROM monitor_images ORDER BY id"))
    except sqlite3.OperationalError:
        return []


def test_a_file_skipped_half_written_is_read_again_when_finished(trained, synth_classes, tmp_path):
    drop, db, log = tmp_path / "drop", tmp_path / "history.db", tmp_path / "monitor.log"
    drop.mkdir()
    whole = sorted(Path(synth_classes).glob("ok/*.png"))[0].read_bytes()
    shutil.copy(sorted(Path(synth_classes).glob("pore/*.png"))[0], drop / "good.png")
    (drop / "late.png").write_bytes(whole[: len(whole) // 2])  # the writer stalls half-way for a long time
    for name in ("good.png", "late.png"):
        os.utime(drop / name, (time.time() - 60, time.time() - 60))
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                *INSPEKT,
                "monitor",
                "--model",
                str(trained.bundle),
                "--source",
                str(drop),
                "--db",
                str(db),
                "--every",
                "100ms",
            ],
            stderr=out,
            env=ENV,
        )
    try:
        deadline = time.monotonic() + 60
        while sorted(_items(db)) != [("good.png", "ok"), ("late.png", "skipped")]:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        (drop / "late.png").write_bytes(whole)  # ... and then finishes the file
        while sorted(_items(db)) != [("good.png", "ok"), ("late.png", "ok")]:
            assert process.poll() is None and time.monotonic() < deadline, (_items(db), log.read_text())
            time.sleep(0.05)
        time.sleep(0.5)  # a few more looks: nothing is read again
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    text = log.read_text()
    assert sorted(_items(db)) == [("good.png", "ok"), ("late.png", "ok")]  # one row each: replaced, not added
    assert text.count("good.png:") == 1 and "late.png: skipped" in text, text
    assert "late.png: changed since it was skipped; read again" in text


def test_a_history_from_before_the_file_columns_is_read_and_extended(trained, synth_classes, tmp_path):
    db = _history(trained, synth_classes, tmp_path)
    with closing(sqlite3.connect(db)) as connection:  # the schema of earlier inspekt versions
        connection.execute("ALTER TABLE monitor_images DROP COLUMN size")
        connection.execute("ALTER TABLE monitor_images DROP COLUMN mtime_ns")
        connection.execute("ALTER TABLE monitor_images DROP COLUMN outputs")
        connection.execute("ALTER TABLE monitor_images DROP COLUMN ood")
    report = _inspekt("monitor", "report", "--db", str(db), "--json")
    assert report.returncode == 0 and '"rows": 40' in report.stdout, report.stderr
    assert '"unlike_training": 0' in report.stdout  # no column: nothing was flagged, nothing fails
    assert _monitor(trained, tmp_path / "drop", db, "--once").returncode == 0
    with closing(sqlite3.connect(db)) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(monitor_images)")]
    assert columns[-4:] == ["size", "mtime_ns", "outputs", "ood"]
