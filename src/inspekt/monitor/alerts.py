"""Drift alerts: a log line always, and a JSON POST to a webhook when one is given.

A webhook that fails is retried with exponential backoff and then given up; the outcome is
returned (and recorded by the monitor), never raised: an alert must not stop the monitoring.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from inspekt.monitor.history import iso_time

log = logging.getLogger("inspekt.monitor")
WEBHOOK_TIMEOUT = 10.0


@dataclass(frozen=True)
class Delivery:
    """How an alert went: ``status`` delivered | failed, after ``attempts`` tries; ``error`` the last failure."""

    status: str
    attempts: int
    error: str | None = None


def alert_payload(window: Any, model: str) -> dict[str, Any]:
    """The JSON document an alert carries (schema ``inspekt.monitor.alert/1``), from a window row."""
    return {
        "schema": "inspekt.monitor.alert/1",
        "event": "drift",
        "time": iso_time(window.time),
        "source": window.source,
        "model": model,
        "window": {"id": window.id, "n": window.n, "first_image": window.first_image, "last_image": window.last_image},
        "drift_score": window.drift_score,
        "drifted": window.drifted,
        "label_mix": window.label_mix,
        "checks": {name: check for name, check in (window.checks or {}).items() if name in (window.drifted or [])},
    }


def log_alert(payload: dict[str, Any]) -> Delivery:
    """Write the alert as one warning line."""
    score = payload["drift_score"]
    log.warning(
        "DRIFT in %s (window %s, %d images): %s%s",
        payload["source"],
        payload["window"]["id"],
        payload["window"]["n"],
        ", ".join(payload["drifted"] or []) or "-",
        "" if score is None else f"; drift score {score:.2f}",
    )
    return Delivery("delivered", 1)


def post_webhook(url: str, payload: dict[str, Any], *, attempts: int = 4, backoff: float = 1.0) -> Delivery:
    """POST ``payload`` as JSON to ``url``, retrying failures.

    Args:
        url: the webhook (http or https).
        payload: the JSON document.
        attempts: tries in all (a 2xx answer ends them).
        backoff: seconds before the second try; doubled before each later one.

    Returns:
        The Delivery (failed after the last try: its error names the last failure).
    """
    body = json.dumps(payload, default=str).encode()
    error = None
    for attempt in range(1, attempts + 1):
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "application/json", "User-Agent": "inspekt-monitor"}
        )
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT) as response:
                response.read()
            return Delivery("delivered", attempt)
        except urllib.error.HTTPError as exc:
            error = f"HTTP {exc.code} {exc.reason}"
        except (urllib.error.URLError, OSError, ValueError) as exc:
            error = str(getattr(exc, "reason", exc))
        log.warning("webhook %s: attempt %d of %d failed (%s)", url, attempt, attempts, error)
        if attempt < attempts:
            time.sleep(backoff * 2 ** (attempt - 1))
    log.error("webhook %s: gave up after %d attempts (%s); the alert is in the history", url, attempts, error)
    return Delivery("failed", attempts, error)
