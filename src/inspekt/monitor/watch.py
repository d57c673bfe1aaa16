"""The monitor loop: take each new image from a source, predict it, profile it, record it; every
``window`` images, check drift against the bundle's reference and alert.

Crash safety comes from the history, not from memory: an image is recorded (prediction, properties
and pixel histogram) in one transaction under a unique ``(source, item)`` key, windows are rebuilt
from recorded rows, and alerts are sent for every drifted window that has none recorded. So after a
``kill -9`` a restart takes up exactly where the database says it stopped.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import model_validator
from sqlalchemy.exc import OperationalError

from inspekt.config import Settings
from inspekt.errors import ConfigError, InspektError, did_you_mean
from inspekt.monitor import history
from inspekt.monitor.alerts import alert_payload, log_alert, post_webhook
from inspekt.monitor.sources import FolderSource, Item, SourceError, open_source, source_name
from inspekt.monitor.sqlite_file import discard_new_file
from inspekt.results import BatchReport, json_safe, ood_note

log = logging.getLogger("inspekt.monitor")
WINDOW_CHECKS = ("properties", "pixels", "domain", "predictions")  # embeddings are not kept per image


class MonitorConfig(Settings):
    """Settings of one monitor (``inspekt monitor`` options).

    Attributes:
        model: the bundle (folder, ``.inspekt`` file or run folder).
        source: a drop folder, ``camera:0`` / ``camera:VIDEO``, or an ``http(s)://`` snapshot URL.
        db: history database URL or SQLite path (None: ``workspace/monitor.db``).
        every: seconds between captures (camera, URL) or between looks at the folder.
        window: images per drift check.
        webhook: URL that receives a JSON POST for each drifted window.
        alpha: false-alarm rate of each window's drift check.
        permutations: relabellings per permutation test in a window's check.
        once: stop when the source has nothing new (folder), has ended (video file), or after one capture.
        max_images: stop after recording this many items.
        name: the source's name in the history (default: the folder's absolute path, or the spec).
        settle: seconds a drop-folder file must stay unchanged before it is read.
        webhook_attempts: tries per webhook alert.
        webhook_backoff: seconds before the first retry (doubled each time).
        checks: the drift checks of each window (``WINDOW_CHECKS`` or some of them). ``predictions``
            compares the model's label mix and scores with those on the training images: a line whose
            defect rate differs from the training data's drifts there in every window; leave it out then.
    """

    model: str
    source: str
    db: str | None = None
    every: float = 10.0
    window: int = 200
    webhook: str | None = None
    alpha: float = 0.05
    permutations: int = 1000
    once: bool = False
    max_images: int | None = None
    name: str | None = None
    settle: float = 1.0
    webhook_attempts: int = 4
    webhook_backoff: float = 1.0
    checks: tuple[str, ...] = WINDOW_CHECKS

    @model_validator(mode="after")
    def _check(self) -> MonitorConfig:
        if self.window < 2:
            raise ConfigError(f"--window {self.window}: a drift window needs at least 2 images (e.g. 200)")
        if self.max_images is not None and self.max_images < 1:
            raise ConfigError(f"--max-images {self.max_images}: give 1 or more")
        if self.webhook and not self.webhook.startswith(("http://", "https://")):
            raise ConfigError(f"--webhook {self.webhook!r}: give an http:// or https:// URL")
        from inspekt.drift.types import DriftConfig

        unknown = [c for c in self.checks if c not in WINDOW_CHECKS]
        if unknown:
            raise ConfigError(
                f"--checks {','.join(unknown)}: a monitor's windows can check {', '.join(WINDOW_CHECKS)} "
                f"(embeddings are not kept per image).{did_you_mean(unknown[0], WINDOW_CHECKS)}"
            )
        # the drift engine's own checks, now: not at the first window, which may be hours of images away
        DriftConfig(alpha=self.alpha, permutations=self.permutations, checks=self.checks)
        return self


@dataclass
class MonitorStats:
    """What one run of the monitor did."""

    recorded: int = 0
    skipped: int = 0
    windows: int = 0
    drifted_windows: int = 0
    alerts_failed: int = 0


def observe(predictor, item: Item, source: str, model: str, min_side: int) -> history.ImageRow:
    """Predict and profile one item into a history row (a skipped row, with the reason, when unreadable)."""
    from inspekt.engine.reference import output_numbers
    from inspekt.profiling.profile import profile_chunk
    from inspekt.profiling.properties import CHANNELS

    row = history.ImageRow(source=source, item=item.item, model=model, size=item.size, mtime_ns=item.mtime_ns)
    if item.data is None:
        row.status, row.reason = "skipped", item.reason
        return row
    report = BatchReport()
    predictions = predictor.predict([item.data], report=report)
    profile = profile_chunk([(item.item, item.data)], min_side)
    if not predictions or not len(profile):
        reasons = [s.reason for s in report.skipped] + [s.reason for s in profile.skipped]
        row.status, row.reason = "skipped", (reasons[0] if reasons else "the image could not be read")
        return row
    p = predictions[0]
    row.label, row.score = p.label, None if p.score is None else float(p.score)
    row.verdict = p.extra.get("verdict", p.label)
    row.scores = {k: float(v) for k, v in (p.scores or {}).items()}
    row.outputs = output_numbers(p) or None
    row.ood = json_safe(p.ood) if p.ood else None
    row.properties = {k: None if math.isnan(v[0]) else float(v[0]) for k, v in profile.values.items()}
    row.histogram = {
        c: profile.pixel_histogram[i].astype(int).tolist()
        for i, c in enumerate(CHANNELS)
        if profile.pixel_histogram[i].sum()
    }
    return row


def window_profile(rows: list[Any], min_side: int):
    """The drift ``Profile`` of recorded rows (properties, histograms, and the model's labels and scores)."""
    from inspekt.profiling.profile import Profile
    from inspekt.profiling.properties import CHANNELS, HIST_BINS, PROPERTY_NAMES, coarse

    hists = np.zeros((len(rows), len(CHANNELS), HIST_BINS))
    for n, row in enumerate(rows):
        for i, channel in enumerate(CHANNELS):
            if channel in (row.histogram or {}):
                hists[n, i] = row.histogram[channel]
    values = {
        name: np.array(
            [np.nan if (r.properties or {}).get(name) is None else r.properties[name] for r in rows], dtype=np.float64
        )
        for name in PROPERTY_NAMES
    }
    model = {"files": [r.item for r in rows], "labels": [r.label for r in rows], "scores": [r.score for r in rows]}
    if all(r.outputs for r in rows):  # a detector's box counts and sizes (rows recorded before them have none)
        model |= {key: [r.outputs.get(key) for r in rows] for key in rows[0].outputs}
    return Profile([r.item for r in rows], values, hists.sum(axis=0), coarse(hists), min_side, [], model)


def check_window(reference, rows: list[Any], alpha: float, permutations: int, checks: tuple[str, ...]) -> dict:
    """Drift of a window of rows vs the reference (the drift engine's calibrated checks), as window-row values."""
    from inspekt.drift.engine import compare_profiles
    from inspekt.drift.types import DriftConfig

    result = compare_profiles(
        reference,
        window_profile(rows, reference.min_side),
        DriftConfig(alpha=alpha, permutations=permutations, checks=checks),
    )
    domain = next((c for c in result.checks if c.name == "domain_classifier"), None)
    labels = [r.label for r in rows]
    return {
        "source": rows[0].source,
        "model": rows[0].model,
        "first_image": rows[0].id,
        "last_image": rows[-1].id,
        "n": len(rows),
        "drift": result.drift,
        "drift_score": None if domain is None else float(domain.effect),
        "drifted": [c.name for c in result.drifted],
        "notes": list(result.notes),
        "checks": {
            c.name: {
                "p_adjusted": float(c.p_adjusted),
                "effect": float(c.effect),
                "min_effect": float(c.min_effect),
                "drifted": bool(c.drifted),
            }
            for c in result.checks
        },
        "label_mix": {label: labels.count(label) / len(labels) for label in sorted(set(map(str, labels)))},
    }


class Monitor:
    """One monitor: a model, a source and a history database (see ``MonitorConfig``)."""

    def __init__(self, config: MonitorConfig):
        from inspekt.bundle import REFERENCE
        from inspekt.drift.sources import bundle_reference
        from inspekt.engine.predictor import Predictor

        self.config = config
        self.predictor = Predictor.load(config.model)  # a missing or broken bundle fails before anything is opened
        if not self.predictor.bundle.has(REFERENCE):  # the drift engine's message would ask for a REFERENCE argument
            raise ConfigError(
                f"--model {config.model}: this bundle has no {REFERENCE} (the training images' drift "
                "profile each window is compared with; bundles made before drift profiles lack it); "
                "retrain the model with this inspekt version"
            )
        self.reference = bundle_reference(config.model)
        self.model = str(Path(config.model).resolve()) if Path(config.model).exists() else config.model
        file = history.sqlite_file(history.as_url(config.db))
        created = file if file is not None and not file.exists() else None
        self.engine = history.open_engine(config.db)
        self.name = config.name or source_name(config.source)
        try:
            self.source = open_source(config.source, history.count_items(self.engine, self.name))
        except InspektError:  # a mistyped folder, a dead camera: no empty history file left behind
            discard_new_file(self.engine, created)
            raise
        if isinstance(self.source, FolderSource):
            self.source.settle = config.settle
        self.stats = MonitorStats()
        self._polled, self._last_count = False, 0  # whether the source was looked at yet; items at the last look
        self._due = True  # windows and alerts to catch up on: a killed run's at start, or after a database outage
        self._pending = len(history.pending_rows(self.engine, self.name, self.model, config.window))

    def run(self) -> MonitorStats:
        """Monitor until the source is done (``once``), ``max_images`` are recorded, or Ctrl-C / SIGTERM."""
        done = history.recorded_items(self.engine, self.name) if isinstance(self.source, FolderSource) else set()
        if isinstance(self.source, FolderSource):
            self.source.skipped = history.skipped_files(self.engine, self.name)
        log.info(
            "monitoring %s with %s; history in %s (%d items already recorded)",
            self.name,
            self.model,
            history.safe_url(history.as_url(self.config.db)),
            len(done),
        )
        try:
            while not self._finished():
                started = time.monotonic()
                self._tick(done)
                if self._finished():
                    break
                time.sleep(self._pause(started))
        except KeyboardInterrupt:
            log.info("stopped")
        finally:
            self.source.close()
            self.engine.dispose()
        return self.stats

    def _pause(self, started: float) -> float:
        if isinstance(self.source, FolderSource) and self.config.once:
            if self._last_count:
                return 0.0  # catching up with a backlog: look again at once
            if self.source.waiting:
                return min(self.config.every, self.config.settle / 2)  # files still being written: look again soon
        return max(0.0, self.config.every - (time.monotonic() - started))

    def _finished(self) -> bool:
        cap = self.config.max_images
        if cap is not None and self.stats.recorded + self.stats.skipped >= cap:
            return True
        if not self.config.once:
            return False
        if isinstance(self.source, FolderSource):
            return self._polled and not self._last_count and not self.source.waiting
        return self._polled and (getattr(self.source, "ended", False) or not self.source.finite)

    def _tick(self, done: set[str]) -> None:
        """One look at the source: catch up on windows and alerts when due, then record each new item.

        Every database write (image, window, alert) runs in here, under one retry: when the database stops
        answering (a server restart), the tick ends with a warning and the next tick takes up what is not
        recorded yet: the same items again (their rows are written in one transaction, so none is half there)
        and the windows and alerts (``_due``), which are rebuilt from recorded rows.
        """
        self._polled, self._last_count = True, 0
        try:
            if self._due:
                self._windows()
            for item in self.source.poll(done):
                self._record(item, done)
                self._last_count += 1
                if self._finished():
                    return
        except SourceError as exc:  # e.g. the snapshot server is down for a moment: say so, try at the next tick
            log.warning("%s; trying again in %gs", exc, self.config.every)
        except OperationalError as exc:  # the database went away (server restart): retried at the next tick
            self._due = True
            if self.config.once:
                raise ConfigError(f"the history database stopped answering ({history.short_error(exc)})") from None
            log.warning(
                "history database unavailable (%s); trying again in %gs", history.short_error(exc), self.config.every
            )

    def _record(self, item: Item, done: set[str]) -> None:
        row = observe(self.predictor, item, self.name, self.model, self.reference.min_side)
        skipped = getattr(self.source, "skipped", {})  # a drop folder's skipped items, read again when changed
        again = item.item in skipped
        if history.record_image(self.engine, row, replace_skipped=again) is None:
            log.warning("%s: recorded meanwhile by another monitor of this source; not counted again", item.item)
            done.add(item.item)
            return
        done.add(item.item)  # recorded: whatever fails after this (a window, an alert) does not take it again
        skipped.pop(item.item, None)
        if row.status == "skipped" and isinstance(self.source, FolderSource):
            skipped[item.item] = (item.size, item.mtime_ns)
        if again:
            log.info("%s: changed since it was skipped; read again", item.item)
        if row.status == "skipped":
            self.stats.skipped += 1
            log.warning("%s: skipped (%s)", item.item, row.reason)
            return
        self.stats.recorded += 1
        said = f"{item.item}: {row.verdict}" + ("" if row.score is None else f" {row.score:.3f}")
        unlike = ood_note(row.ood)
        if unlike:  # a model's answer on an image unlike those it was made for: a person should look
            log.warning("%s; %s", said, unlike)
        else:
            log.info("%s", said)
        self._pending += 1
        if self._pending >= self.config.window:
            self._windows()

    def _windows(self) -> None:
        """Check every full window not yet checked, then alert for every drifted window not yet alerted."""
        self._due = True  # until all of it is recorded: a database outage in here is caught up on at the next tick
        while True:
            rows = history.pending_rows(self.engine, self.name, self.model, self.config.window)
            self._pending = len(rows)
            if len(rows) < self.config.window:
                break
            values = check_window(self.reference, rows, self.config.alpha, self.config.permutations, self.config.checks)
            if history.record_window(self.engine, values) is not None:
                self.stats.windows += 1
                self.stats.drifted_windows += values["drift"]
                log.info(
                    "window of %d images (%s..%s): %s",
                    values["n"],
                    rows[0].item,
                    rows[-1].item,
                    "DRIFT: " + ", ".join(values["drifted"]) if values["drift"] else "no drift",
                )
        self._alert()
        self._due = False

    def _alert(self) -> None:
        # The webhook goes first, and only for windows not yet logged: a window's log row then proves its
        # webhook was tried when one was set, so a webhook added on a later run gets no flood of old windows.
        channels = ([("webhook", self.config.webhook)] if self.config.webhook else []) + [("log", None)]
        for channel, target in channels:
            unless = "log" if channel == "webhook" else None
            for window in history.unalerted_windows(self.engine, self.name, self.model, channel, unless):
                payload = alert_payload(window, self.model)
                delivery = (
                    log_alert(payload)
                    if channel == "log"
                    else post_webhook(
                        target, payload, attempts=self.config.webhook_attempts, backoff=self.config.webhook_backoff
                    )
                )
                self.stats.alerts_failed += delivery.status != "delivered"
                history.record_alert(
                    self.engine, window.id, channel, target, delivery.status, delivery.attempts, delivery.error
                )


def run_monitor(config: MonitorConfig) -> MonitorStats:
    """Open the model, history and source of ``config`` and monitor (see ``Monitor.run``).

    Raises:
        InspektError: the model, source or database cannot be used (before anything is recorded).
    """
    return Monitor(config).run()
