"""``inspekt serve MODEL...``: the REST API (FastAPI + uvicorn) over model bundles."""

from __future__ import annotations

import errno
import importlib.util
import os
import socket
import ssl
from pathlib import Path

import typer

from inspekt.cli import app
from inspekt.cli.common import err_console, warn_of_caveats
from inspekt.errors import ConfigError, InspektError, did_you_mean


def _api_key(variable: str | None) -> str | None:
    if variable is None:
        return None
    key = os.environ.get(variable)
    if not key:
        raise ConfigError(
            f"--api-key-env {variable}: the environment variable {variable} is not set or empty; "
            f"export {variable}=<a long random string> first"
        )
    return key


def _tls(certfile: Path | None, keyfile: Path | None) -> dict:
    if (certfile is None) != (keyfile is None):
        raise ConfigError("HTTPS needs both --ssl-certfile and --ssl-keyfile")
    for option, path in (("--ssl-certfile", certfile), ("--ssl-keyfile", keyfile)):
        if path is not None and not path.is_file():
            raise ConfigError(f"{option} {path}: file not found")
    if certfile is None:
        return {}
    try:  # checked here: uvicorn would fail after start-up with an SSL traceback (and prompt for a key password)
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(certfile, keyfile, password=b"")
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"--ssl-certfile {certfile} / --ssl-keyfile {keyfile}: not a matching PEM certificate and "
            f"unencrypted private key ({exc}); e.g. openssl req -x509 -newkey rsa:2048 -nodes "
            "-keyout key.pem -out cert.pem"
        ) from None
    return {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile)}


def _log_level(value: str) -> str:
    from uvicorn.config import LOG_LEVELS

    level = value.lower()
    if level not in LOG_LEVELS:
        raise ConfigError(
            f"--log-level {value}: not a log level; choose one of {', '.join(LOG_LEVELS)}."
            f"{did_you_mean(level, LOG_LEVELS)}"
        )
    return level


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound before the models load and the banner says where they are served."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} is in use on {host} (another server listens there); choose another --port "
                "or stop that server"
            ) from None
        reason = exc.strerror or str(exc)
        raise ConfigError(f"--host {host} --port {port}: cannot listen there ({reason}); check both") from None


@app.command()
def serve(
    models: list[str] = typer.Argument(
        ...,
        help="Model bundles to serve: PATH, or NAME=PATH to choose the URL name "
        "(default: the bundle's file or folder name).",
    ),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0: reachable from other machines)."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
    api_key_env: str = typer.Option(
        None,
        "--api-key-env",
        metavar="VAR",
        help="Require the header X-API-Key equal to this environment variable's value.",
    ),
    ssl_certfile: Path = typer.Option(None, "--ssl-certfile", help="HTTPS certificate (PEM)."),
    ssl_keyfile: Path = typer.Option(None, "--ssl-keyfile", help="HTTPS private key (PEM)."),
    max_upload_mb: float = typer.Option(20.0, "--max-upload-mb", help="Largest request body, in MB."),
    max_files: int = typer.Option(64, "--max-files", help="Most files in one request."),
    max_pixels: int = typer.Option(
        50_000_000, "--max-pixels", help="Refuse images with more pixels (from the header, before decoding)."
    ),
    max_request_pixels: int = typer.Option(
        100_000_000,
        "--max-request-pixels",
        help="Pixels all images of one request may have together (after "
        "enhancement); the rest are refused before decoding.",
    ),
    max_inflight_pixels: int = typer.Option(
        150_000_000,
        "--max-inflight-pixels",
        help="Pixels all requests being served may hold at once (from the headers, times the enhancement's "
        "working copies); later requests wait their turn. Bounds the server's memory.",
    ),
    request_timeout: float = typer.Option(
        60.0, "--request-timeout", help="Seconds a request may take, waiting included; then 503 and its work stops."
    ),
    max_enhance_seconds: float = typer.Option(
        10.0, "--max-enhance-seconds", help="CPU seconds one request's enhancement may be estimated to take."
    ),
    body_timeout: float = typer.Option(30.0, "--body-timeout", help="Seconds a request body may take to arrive."),
    max_connections: int = typer.Option(
        256, "--max-connections", min=1, help="Open connections at most; more are answered 503 at once."
    ),
    max_batch: int = typer.Option(32, "--max-batch", help="Micro-batching: most images per model call."),
    max_wait_ms: float = typer.Option(5.0, "--max-wait-ms", help="Micro-batching: longest wait for more requests."),
    threads: int = typer.Option(
        None,
        "--threads",
        help="Inference threads per model call; two calls run at once "
        "(default: (CPUs - 1) / 2, at least 1: a core stays free for HTTP).",
    ),
    cors_origins: list[str] = typer.Option(
        None, "--cors-origin", help="Allow browser calls from this origin (repeatable; CORS is off by default)."
    ),
    drift_checks: str = typer.Option(
        "properties,pixels,domain,predictions,embeddings",
        "--drift-checks",
        help="Drift checks run when a request names none (domain costs seconds).",
    ),
    log_level: str = typer.Option("info", "--log-level", help="uvicorn log level: debug, info, warning, error."),
    access_log: bool = typer.Option(False, "--access-log", help="Log every request (off: the metrics count them)."),
) -> None:
    """Serve models over HTTP: predict, drift, model cards, health and Prometheus metrics."""
    if any(importlib.util.find_spec(m) is None for m in ("fastapi", "uvicorn", "multipart", "prometheus_client")):
        raise InspektError("inspekt serve needs the serve extra: pip install 'inspekt[serve]'")
    import uvicorn

    from inspekt.api import ServeSettings, create_app
    from inspekt.drift.types import parse_checks

    tls, level = _tls(ssl_certfile, ssl_keyfile), _log_level(log_level)
    settings = ServeSettings(
        models=tuple(models),
        api_key=_api_key(api_key_env),
        max_upload_mb=max_upload_mb,
        max_files=max_files,
        max_pixels=max_pixels,
        max_request_pixels=max_request_pixels,
        max_inflight_pixels=max_inflight_pixels,
        request_timeout=request_timeout,
        max_enhance_seconds=max_enhance_seconds,
        body_timeout=body_timeout,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        threads=threads,
        cors_origins=tuple(cors_origins or ()),
        drift_checks=parse_checks(drift_checks),
    )
    with _listen(host, port) as sock:  # a port in use fails before the models load, and before the banner
        service = create_app(settings)  # loads and warms up every model: a bad bundle fails here
        names = ", ".join(service.state.inspekt.models)
        for served in service.state.inspekt.models.values():  # said once at start, as predict and eval say it
            warn_of_caveats(served.predictor)
        scheme = "https" if tls else "http"
        err_console.print(
            f"inspekt serve: {names} on {scheme}://{host}:{port} (API key "
            f"{'required' if settings.api_key else 'off'}; docs at /docs); Ctrl-C to stop",
            highlight=False,
        )
        config = uvicorn.Config(
            service,
            host=host,
            port=port,
            log_level=level,
            access_log=access_log,
            limit_concurrency=max_connections,
            timeout_keep_alive=5,  # an idle keep-alive connection is closed after 5 s
            timeout_graceful_shutdown=30,  # SIGTERM drains the requests in flight for 30 s at most
            **tls,
        )
        uvicorn.Server(config).run(sockets=[sock])
