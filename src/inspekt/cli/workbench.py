"""``inspekt app``: start the Streamlit workbench."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import typer

from inspekt.cli import app
from inspekt.errors import InspektError


@app.command("app")
def workbench(
    port: int = typer.Option(8501, "--port", help="Port to serve on."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 to reach it from other machines)."),
    workspace: Path = typer.Option(Path("workspace"), "--workspace", help="Workspace: models/, runs/, data/."),
) -> None:
    """Open the workbench: inspect, batch, evaluate, drift, train, monitor (http://HOST:PORT)."""
    from inspekt.app import MAIN
    from inspekt.app.common import WORKSPACE_ENV

    if importlib.util.find_spec("streamlit") is None:
        raise InspektError("the workbench needs Streamlit: pip install 'inspekt[app]'")
    workspace.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(MAIN),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--server.fileWatcherType",
        "none",
        "--server.maxUploadSize",  # MB per uploaded file (bundles, zips of images); Streamlit's default, stated
        "200",
        "--global.disableWidgetStateDuplicationWarning",  # kept choices are re-set each run (common.py)
        "true",
    ]
    print(f"inspekt workbench on http://{host}:{port} (workspace {workspace.resolve()}); Ctrl-C to stop", flush=True)
    # become the Streamlit server (no child process): Ctrl-C and SIGTERM reach it directly
    os.execve(sys.executable, command, {**os.environ, WORKSPACE_ENV: str(workspace.resolve())})
