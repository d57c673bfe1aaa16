"""Training runs started from the workbench: background processes that outlive the page.

A job is ``python -m inspekt train TASK --data ... --out <workspace>/runs --name NAME``, started in
its own session (a page refresh or a closed browser does not stop it), with its output in
``<workspace>/runs/.jobs/NAME.log`` and its process id in ``NAME.json``. Progress is read from
the run folder the training writes anyway (``results.csv``, ``config.yaml``, ``bundle/``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from inspekt.engine.runs import read_results

LOG_TAIL = 16_384  # bytes of a run's output read for its status and shown when it ends without a bundle


@dataclass
class Job:
    """A training run started from the workbench, as seen from its files."""

    name: str
    task: str
    run_dir: Path
    pid: int
    log: Path

    @property
    def history(self) -> list[dict]:
        return read_results(self.run_dir / "results.csv")

    @property
    def epochs(self) -> int | None:
        config = self.run_dir / "config.yaml"
        if not config.is_file():
            return None
        return (yaml.safe_load(config.read_text(encoding="utf-8")) or {}).get("epochs")

    @property
    def done(self) -> bool:
        """Its bundle is complete: the card, and the drift reference written after it."""
        return all((self.run_dir / "bundle" / name).is_file() for name in ("card.json", "reference.json"))

    @property
    def running(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        try:  # a finished child that nobody waited for is a zombie: not running
            return Path(f"/proc/{self.pid}/stat").read_text().split()[2] != "Z"
        except OSError:
            return True

    def said(self) -> str:
        """The end of the run's output (what ``inspekt train`` printed), "" before it printed anything."""
        try:
            with self.log.open("rb") as f:
                f.seek(max(0, f.seek(0, os.SEEK_END) - LOG_TAIL))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def status(self) -> str:
        """ "running", "done", "stopped by you (...)" or "failed: <the error>", from the files and the log."""
        if self.running:
            return "running"
        said = self.said()
        error = next((line for line in said.splitlines() if line.startswith("error:")), None)
        if error is not None:  # also a run stopped while its bundle was written: the error says to --resume it
            return f"failed: {error.removeprefix('error:').strip()}"
        if self.done:
            return "stopped by you; the best epoch so far is bundled" if "interrupted: kept" in said else "done"
        return "ended without a bundle (see the log)"

    def stop(self) -> None:
        """Stop the run as Ctrl-C does: it keeps the best epoch so far and writes its bundle (a run
        stopped before its first epoch ends keeps nothing)."""
        if self.running:
            os.killpg(self.pid, signal.SIGINT)  # started in its own session: the group is the run


def start(
    workspace: Path, task: str, data: str, name: str, options: dict[str, object], config: Path | None = None
) -> Job:
    """Start ``inspekt train`` in the background and record it (``config``: a YAML file, e.g. an
    earlier run's ``config.yaml``, that ``data`` and ``options`` override)."""
    jobs = workspace / "runs" / ".jobs"
    jobs.mkdir(parents=True, exist_ok=True)
    log = jobs / f"{name}.log"
    command = [
        sys.executable,
        "-m",
        "inspekt",
        "train",
        task,
        "--data",
        data,
        "--out",
        str(workspace / "runs"),
        "--name",
        name,
        "--exist-ok",
        *(["--config", str(config)] if config else []),
        *[f"{k}={v}" for k, v in options.items()],
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    job = Job(name, task, workspace / "runs" / task / name, process.pid, log)
    (jobs / f"{name}.json").write_text(
        json.dumps({"task": task, "pid": process.pid, "command": command}), encoding="utf-8"
    )
    return job


def jobs(workspace: Path) -> list[Job]:
    """Every job started from the workbench in this workspace, newest first."""
    found = []
    for record in sorted((workspace / "runs" / ".jobs").glob("*.json"), key=lambda p: -p.stat().st_mtime):
        info = json.loads(record.read_text(encoding="utf-8"))
        name = record.stem
        found.append(
            Job(
                name,
                info["task"],
                workspace / "runs" / info["task"] / name,
                int(info["pid"]),
                record.with_suffix(".log"),
            )
        )
    return found
