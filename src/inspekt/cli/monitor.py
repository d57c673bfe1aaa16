"""``inspekt monitor --model M --source SOURCE`` and ``inspekt monitor report --db URL``."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path

import typer

from inspekt.cli import app
from inspekt.cli.common import console, err_console, print_json
from inspekt.errors import ConfigError

monitor_app = typer.Typer(
    help="Watch a drop folder, a camera or a snapshot URL: predict, record history, check drift every window.\n\n"
    "inspekt monitor --model M --source SOURCE [--every 10s] [--window 200] [--db URL] [--webhook URL]\n\n"
    "inspekt monitor report [--db URL] [--json] [--out FILE]"
)
app.add_typer(monitor_app, name="monitor")


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time (a test runner swaps it; a bound stream would be stale)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def _setup_logging(quiet: bool) -> None:
    logger = logging.getLogger("inspekt.monitor")
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()  # stderr: stdout stays free for machine-readable output
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%dT%H:%M:%S"))
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.WARNING if quiet else logging.INFO)


def _stop_on_sigterm() -> None:
    def stop(signum, frame):  # a service manager's stop: finish the current row's transaction, then exit
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)


@monitor_app.callback(invoke_without_command=True)
def monitor(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", "-m", help="Model bundle (folder, .inspekt file or run folder)."),
    source: str = typer.Option(
        None, "--source", "-s", help="Drop folder, camera:0 (or camera:VIDEO_FILE), or http(s):// snapshot URL."
    ),
    every: str = typer.Option("10s", "--every", help="Capture (camera, URL) or folder-poll interval: 500ms, 10s, 2m."),
    window: int = typer.Option(200, "--window", help="Images per drift check."),
    db: str = typer.Option(
        None, "--db", help="History database: SQLAlchemy URL or SQLite file (default: workspace/monitor.db)."
    ),
    webhook: str = typer.Option(None, "--webhook", help="POST a JSON alert here for each drifted window."),
    alpha: float = typer.Option(0.05, "--alpha", help="False-alarm rate of each window's drift check."),
    checks: str = typer.Option(
        None,
        "--checks",
        help="Each window's checks, comma-separated (default: properties,pixels,domain,predictions); leave out "
        "predictions when the line's defect rate is not the training data's (its label mix would drift in every "
        "window).",
    ),
    max_images: int = typer.Option(None, "--max-images", help="Stop after recording this many images."),
    once: bool = typer.Option(False, "--once", help="Process what the source has now, then stop."),
    source_name: str = typer.Option(None, "--source-name", help="Name of the source in the history."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Log only warnings (skips, alerts), not every image."),
) -> None:
    """Monitor a source with a model; `inspekt monitor report` summarises the history."""
    if ctx.invoked_subcommand is not None:
        return
    from inspekt.drift.types import parse_checks
    from inspekt.monitor import MonitorConfig, parse_duration, run_monitor

    missing = [name for name, value in (("--model", model), ("--source", source)) if not value]
    if missing:
        raise ConfigError(
            f"inspekt monitor needs {' and '.join(missing)}: e.g. inspekt monitor --model model.inspekt "
            "--source incoming/ (or camera:0, or http://camera/snapshot.jpg)"
        )
    config = MonitorConfig(
        model=model,
        source=source,
        db=db,
        every=parse_duration(every),
        window=window,
        webhook=webhook,
        alpha=alpha,
        **({"checks": parse_checks(checks)} if checks is not None else {}),
        once=once,
        max_images=max_images,
        name=source_name,
    )
    _setup_logging(quiet)
    _stop_on_sigterm()
    stats = run_monitor(config)
    err_console.print(
        f"recorded {stats.recorded} images, skipped {stats.skipped}; {stats.windows} drift windows, "
        f"{stats.drifted_windows} drifted",
        highlight=False,
    )


@monitor_app.command()
def report(
    db: str = typer.Option(
        None, "--db", help="History database: SQLAlchemy URL or SQLite file (default: workspace/monitor.db)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON (schema inspekt.monitor.report/1)."),
    out: Path = typer.Option(None, "--out", "-o", help="Write the JSON summary to this file."),
) -> None:
    """Summarise a monitoring history: rows, time span, label mix, scores, drift windows, alerts."""
    from inspekt.io import output_file
    from inspekt.monitor import print_summary, summarize

    target = output_file(out, "monitor.json") if out else None
    summary = summarize(db)
    if target:
        target.write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
        err_console.print(f"wrote {target}", highlight=False)
    if as_json:
        print_json(summary)
    elif not target:
        print_summary(summary, console)
