"""The history summary behind ``inspekt monitor report`` and the app's Monitor page: numbers in,
then rendering (Rich, JSON) apart."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import func, inspect, select

from inspekt.monitor import history
from inspekt.results import ood_reason

SCHEMA = "inspekt.monitor.report/1"


def load_history(db: str | os.PathLike | None, last: int | None = None) -> dict[str, Any]:
    """The history's rows, oldest first: ``{"images": [...], "windows": [...], "alerts": [...],
    "total_images": N}`` (images without their properties and histograms).

    Args:
        db: history database URL or SQLite path (None: the workspace's ``monitor.db``).
        last: only the most recent this many image rows (windows and alerts: all); None for all.

    Raises:
        ConfigError: the database cannot be opened or holds no monitoring history.
    """
    engine = history.open_engine(db, create=False)
    table = history.images
    have = {column["name"] for column in inspect(engine).get_columns(table.name)}  # older histories lack some
    wanted = [c for c in table.c if c.name in have and c.name not in ("properties", "histogram")]  # not summarised
    query = select(*wanted).order_by(table.c.id.desc())
    try:
        with engine.connect() as connection:
            images = [dict(r._mapping) for r in connection.execute(query if last is None else query.limit(last))]
            return {
                "images": images[::-1],
                "total_images": int(connection.scalar(select(func.count()).select_from(table))),
                "windows": [
                    dict(r._mapping) for r in connection.execute(select(history.windows).order_by(history.windows.c.id))
                ],
                "alerts": [
                    dict(r._mapping) for r in connection.execute(select(history.alerts).order_by(history.alerts.c.id))
                ],
            }
    finally:
        engine.dispose()


def summarize(db: str | os.PathLike | None) -> dict[str, Any]:
    """The history summary (schema ``inspekt.monitor.report/1``): rows, time span, label mix, score
    statistics, window results and alerts, overall and per source.

    Args:
        db: history database URL or SQLite path (None: the workspace's ``monitor.db``).

    Raises:
        ConfigError: the database cannot be opened or holds no monitoring history.
    """
    return summarize_history(load_history(db), history.safe_url(history.as_url(db)))


def summarize_history(data: dict[str, Any], database: str) -> dict[str, Any]:
    """The summary of rows read by ``load_history`` (``database``: the URL to show, password hidden)."""
    images, windows, alerts = data["images"], data["windows"], data["alerts"]
    ok = [r for r in images if r["status"] == "ok"]
    unlike = _unlike(ok)
    sources = sorted({r["source"] for r in images})
    return {
        "schema": SCHEMA,
        "database": database,
        "total_rows": data["total_images"],
        "rows": len(images),
        "recorded": len(ok),
        "skipped": len(images) - len(ok),
        "first": history.iso_time(min((r["time"] for r in images), default=None)),
        "last": history.iso_time(max((r["time"] for r in images), default=None)),
        "sources": {
            s: _source_summary([r for r in images if r["source"] == s], [w for w in windows if w["source"] == s])
            for s in sources
        },
        "label_mix": _mix(ok),
        "scores": _score_stats(ok),
        "windows": [{**w, "time": history.iso_time(w["time"])} for w in windows],
        "drifted_windows": sum(bool(w["drift"]) for w in windows),
        "alerts": [{**a, "time": history.iso_time(a["time"])} for a in alerts],
        "skipped_items": [
            {"source": r["source"], "item": r["item"], "reason": r["reason"]} for r in images if r["status"] != "ok"
        ][:100],
        "unlike_training": len(unlike),
        "unlike_training_items": [
            {"source": r["source"], "item": r["item"], "label": r["label"], "why": ood_reason(r["ood"])}
            for r in unlike[:100]
        ],
    }


def _unlike(rows: list[dict]) -> list[dict]:
    """The rows whose image the Predictor found unlike the training images, most unlike first (older
    histories: none)."""
    return sorted((r for r in rows if ood_reason(r.get("ood"))), key=lambda r: -r["ood"]["score"])


def _source_summary(images: list[dict], windows: list[dict]) -> dict[str, Any]:
    ok = [r for r in images if r["status"] == "ok"]
    return {
        "rows": len(images),
        "recorded": len(ok),
        "skipped": len(images) - len(ok),
        "models": sorted({r["model"] for r in images}),
        "first": history.iso_time(images[0]["time"]),
        "last": history.iso_time(images[-1]["time"]),
        "label_mix": _mix(ok),
        "scores": _score_stats(ok),
        "windows": len(windows),
        "drifted_windows": sum(bool(w["drift"]) for w in windows),
        "unlike_training": len(_unlike(ok)),
    }


def _mix(rows: list[dict]) -> dict[str, float]:
    labels = [str(r["label"]) for r in rows]
    return {label: labels.count(label) / len(labels) for label in sorted(set(labels))}


def _score_stats(rows: list[dict]) -> dict[str, float] | None:
    import numpy as np

    scores = np.array([r["score"] for r in rows if r["score"] is not None], dtype=np.float64)
    if not len(scores):
        return None
    return {
        "n": int(len(scores)),
        "mean": float(scores.mean()),
        "std": float(scores.std()),
        "min": float(scores.min()),
        "p50": float(np.median(scores)),
        "max": float(scores.max()),
    }


def print_summary(summary: dict[str, Any], console) -> None:
    """Render a summary with Rich: totals, per-source table, label mix, scores, windows, alerts."""
    from rich.markup import escape  # source names and URLs are the user's text, not Rich markup
    from rich.table import Table

    console.print(
        f"[bold]Monitoring history[/] {escape(summary['database'])}: {summary['rows']} rows "
        f"({summary['recorded']} recorded, {summary['skipped']} skipped), "
        f"{summary['first'] or '-'} .. {summary['last'] or '-'}",
        highlight=False,
    )
    table = Table("source", "rows", "skipped", "label mix", "mean score", "windows", "drifted", title="Sources")
    for name, s in summary["sources"].items():
        table.add_row(
            escape(name),
            str(s["rows"]),
            str(s["skipped"]),
            _mix_text(s["label_mix"]),
            "-" if not s["scores"] else f"{s['scores']['mean']:.3f}",
            str(s["windows"]),
            str(s["drifted_windows"]),
        )
    console.print(table)
    if summary["scores"]:
        sc = summary["scores"]
        console.print(
            f"scores: mean {sc['mean']:.3f} ± {sc['std']:.3f}, min {sc['min']:.3f}, median {sc['p50']:.3f}, "
            f"max {sc['max']:.3f}",
            highlight=False,
        )
    console.print(f"label mix: {_mix_text(summary['label_mix']) or '-'}", highlight=False)
    windows = Table(title="Drift windows")
    for column in ("window", "time", "images", "verdict", "drift score", "drifted checks"):
        windows.add_column(column, no_wrap=column == "time")  # time to the second, on one line, fits 80 columns
    for w in summary["windows"][-20:]:
        windows.add_row(
            str(w["id"]),
            w["time"][:19].replace("T", " "),
            str(w["n"]),
            "[red]DRIFT[/]" if w["drift"] else "[green]ok[/]",
            "-" if w["drift_score"] is None else f"{w['drift_score']:.2f}",
            ", ".join(w["drifted"] or []),
        )
    console.print(windows if summary["windows"] else "no drift windows yet (fewer images than --window)")
    for a in summary["alerts"][-20:]:
        console.print(
            f"alert {a['time']} window {a['window_id']} {a['channel']} {a['target'] or ''}: {a['status']} "
            f"after {a['attempts']} attempt(s){' (' + a['error'] + ')' if a['error'] else ''}",
            highlight=False,
            markup=False,
        )
    for s in summary["skipped_items"][:10]:
        console.print(f"skipped {s['item']}: {s['reason']}", highlight=False, markup=False)
    if summary["unlike_training"]:
        console.print(
            f"{summary['unlike_training']} image(s) unlike the training images (their labels may be meaningless):",
            highlight=False,
        )
    for u in summary["unlike_training_items"][:10]:
        console.print(f"  {u['item']}: {u['label']}, {u['why']}", highlight=False, markup=False)


def _mix_text(mix: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.0%}" for k, v in sorted(mix.items(), key=lambda kv: -kv[1]))
