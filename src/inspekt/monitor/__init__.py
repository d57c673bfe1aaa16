"""Continuous monitoring: watch a drop folder, a camera or a snapshot URL; predict and profile each
image into a history database; check drift every window against the bundle's reference; alert.

    from inspekt.monitor import MonitorConfig, run_monitor, summarize
    run_monitor(MonitorConfig(model="model.inspekt", source="incoming/", once=True))
    summarize("workspace/monitor.db")["label_mix"]

``sources.py`` (where images come from), ``history.py`` (the SQLAlchemy tables), ``watch.py`` (the
loop), ``alerts.py`` (log and webhook), ``summary.py`` (the report).
"""

from __future__ import annotations

from inspekt.monitor.history import default_url, open_engine
from inspekt.monitor.sources import SourceError, parse_duration
from inspekt.monitor.summary import print_summary, summarize
from inspekt.monitor.watch import Monitor, MonitorConfig, MonitorStats, run_monitor

__all__ = [
    "Monitor",
    "MonitorConfig",
    "MonitorStats",
    "SourceError",
    "default_url",
    "open_engine",
    "parse_duration",
    "print_summary",
    "run_monitor",
    "summarize",
]
