"""The monitoring history in a real PostgreSQL server, started by the test (skipped when PostgreSQL
is not installed): the same monitor, restart and report as with SQLite."""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import free_port
from inspekt.cli import app
from inspekt.monitor import MonitorConfig, run_monitor, summarize

runner = CliRunner()


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


@pytest.fixture(scope="module")
def postgres_url():
    """A throw-away PostgreSQL server on 127.0.0.1 (its own data and socket folders); its URL."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.skip(
            "PostgreSQL is not installed (no initdb / pg_ctl); `make test` installs it, or apt-get install postgresql"
        )
    pytest.importorskip("psycopg", reason="the psycopg driver is not installed (pip install 'inspekt[postgres]')")
    root = Path(tempfile.mkdtemp(prefix="inspekt-pg-"))
    data, sockets = root / "data", root / "sock"
    sockets.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(sockets, "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres([initdb, "-D", str(data), "-U", "inspekt", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {sockets} -c fsync=off"
    subprocess.run(
        _as_postgres([pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start"]),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://inspekt@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(_as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]), capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


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
