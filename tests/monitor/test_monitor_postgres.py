"""The monitoring history in a real PostgreSQL server, started by the test (skipped when PostgreSQL
is not installed): the same monitor, restart and report as with SQLite."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import free_port
from inspekt.cli import app
from inspekt.monitor import MonitorConfig, run_monitor, summarize

runner = CliRunner()
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _binary(name: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name)]
    return found[-1] if found[-1] else None


def _as_postgres(args: list[str]) -> list[str]:
    """Run as the ``postgres`` system user when we are root (PostgreSQL refuses to run as root)."""
    if os.geteuid() != 0:
        return args
    if not shutil.which("runuser"):
        pytest.skip("running as root without runuser: cannot start PostgreSQL as another user")
    return ["runuser", "-u", "postgres", "--", *args]


class _Server:
    """A throw-away PostgreSQL server on 127.0.0.1 (its own data and socket folders) that a test may stop
    and start again (a server restart while the monitor writes)."""

    def __init__(self):
        self.initdb, self.pg_ctl = _binary("initdb"), _binary("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            pytest.skip(
                "PostgreSQL is not installed (no initdb / pg_ctl); `make test` installs it, or apt-get install "
                "postgresql"
            )
        pytest.importorskip("psycopg", reason="the psycopg driver is not installed (pip install 'inspekt[postgres]')")
        self.root = Path(tempfile.mkdtemp(prefix="inspekt-pg-"))
        self.data, sockets = self.root / "data", self.root / "sock"
        sockets.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(sockets, "postgres")
        port = free_port()
        subprocess.run(
            _as_postgres([self.initdb, "-D", str(self.data), "-U", "inspekt", "--auth=trust", "-E", "UTF8"]),
            check=True,
            capture_output=True,
        )
        self.options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
        self.url = f"postgresql+psycopg://inspekt@127.0.0.1:{port}/postgres"
        self.start()

    def start(self) -> None:
        args = ["-D", str(self.data), "-o", self.options, "-l", str(self.root / "log"), "-w", "-t", "60", "start"]
        subprocess.run(_as_postgres([self.pg_ctl, *args]), check=True, capture_output=True)

    def stop(self, mode: str = "fast") -> None:
        subprocess.run(_as_postgres([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"]), capture_output=True)

    def remove(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL server (``_Server``)."""
    server = _Server()
    try:
        yield server
    finally:
        server.remove()


@pytest.fixture(scope="module")
def postgres_url(postgres):
    """The URL of the throw-away PostgreSQL server."""
    return postgres.url


@pytest.mark.slow
def test_history_in_postgresql_with_restart_and_report(trained, synth_classes, postgres_url, tmp_path):
    drop = tmp_path / "drop"
    drop.mkdir()
    files = sorted(Path(synth_classes).glob("*/*.png"))[::8][:10]
    for i, src in enumerate(files):
        shutil.copy(src, drop / f"{i:02d}.png")
        os.utime(drop / f"{i:02d}.png", (time.time() - 60, time.time() - 60 + i))
    config = {
        "model": str(trained.bundle),
        "source": str(drop),
        "db": postgres_url,
        "every": 0.02,
        "once": True,
        "window": 4,
    }
    first = run_monitor(MonitorConfig(**config, max_images=6))
    rest = run_monitor(MonitorConfig(**config))
    assert (first.recorded, rest.recorded) == (6, 4)
    assert (first.windows, rest.windows) == (1, 1)  # 10 images: windows of 4 at 4 and 8

    summary = summarize(postgres_url)
    assert summary["rows"] == 10 and summary["recorded"] == 10 and len(summary["windows"]) == 2
    assert summary["database"].startswith("postgresql+psycopg://inspekt@127.0.0.1")
    report = runner.invoke(app, ["monitor", "report", "--db", postgres_url, "--json"])
    assert report.exit_code == 0, report.output
    assert json.loads(report.stdout)["sources"][str(drop)]["rows"] == 10


def test_an_unreachable_postgresql_is_one_clear_line(trained, tmp_path):
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed")
    url = f"postgresql+psycopg://nobody:secret@127.0.0.1:{free_port()}/db"
    result = runner.invoke(
        app, ["monitor", "--model", str(trained.bundle), "--source", str(tmp_path), "--db", url, "--once"]
    )
    assert result.exit_code == 2 and "cannot create the history tables" in result.output
    assert "secret" not in result.output  # the password is not echoed


def _count(url: str, table, source: str) -> int:
    """Rows of ``source`` in ``table`` (0 while the server is down or the monitor has not begun)."""
    from sqlalchemy import create_engine, func, select
    from sqlalchemy.exc import OperationalError, ProgrammingError

    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(table).where(table.c.source == source)))
    except (OperationalError, ProgrammingError):  # down, or no tables yet
        return 0
    finally:
        engine.dispose()


def _wait_for(condition, process, log: Path, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert process.poll() is None, f"the monitor ended (exit {process.returncode}):\n{log.read_text()}"
        assert time.monotonic() < deadline, f"timed out:\n{log.read_text()}"
        time.sleep(0.02)


def test_a_server_restart_while_windows_are_recorded_loses_nothing(trained, synth_classes, postgres, tmp_path):
    from inspekt.monitor import history

    drop, log, name = tmp_path / "drop", tmp_path / "monitor.log", f"outage-{tmp_path.name}"
    drop.mkdir()
    files = sorted(Path(synth_classes).glob("*/*.png"))[::4][:12]

    def add(first: int, last: int) -> None:
        for i in range(first, last):
            shutil.copy(files[i], drop / f"{i:02d}.png")
            os.utime(drop / f"{i:02d}.png", (time.time() - 60, time.time() - 60 + i))

    def wait(table, n: int) -> None:
        _wait_for(lambda: _count(postgres.url, table, name) == n, process, log)

    cmd = [sys.executable, "-m", "inspekt", "monitor", "--model", str(trained.bundle), "--source", str(drop)]
    with log.open("w") as out:
        process = subprocess.Popen(
            [*cmd, "--source-name", name, "--db", postgres.url, "--every", "50ms", "--window", "4"],
            stderr=out,
            env=ENV,
        )
    try:
        for k in range(3):  # each outage starts while the window of images 4k+1..4k+4 is being checked
            add(4 * k, 4 * k + 3)
            wait(history.images, 4 * k + 3)
            add(4 * k + 3, 4 * k + 4)
            wait(history.images, 4 * k + 4)
            postgres.stop()
            time.sleep(0.5)
            postgres.start()
            wait(history.windows, k + 1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, log.read_text()
    finally:
        if process.poll() is None:
            process.kill()
    summary = summarize(postgres.url)["sources"][name]
    assert summary["rows"] == 12 and summary["skipped"] == 0 and summary["windows"] == 3, summary
    assert "history database unavailable" in log.read_text() and "another monitor" not in log.read_text()
