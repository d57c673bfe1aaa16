"""Monitor: the history that ``inspekt monitor`` writes (the same database): totals, label mix and
scores over time, drift windows, alerts and skipped items."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from inspekt.app import common
from inspekt.errors import InspektError
from inspekt.monitor.history import as_url, default_url, sqlite_file
from inspekt.monitor.summary import load_history, summarize_history

root = common.workspace()
st.title("Monitor")
db = st.text_input("History database (SQLAlchemy URL or SQLite file)", value=default_url(root), key="monitor_db")
last = st.select_slider("Show the last images", [100, 1000, 10000, 100000], value=10000, key="monitor_last")
st.button("Refresh")
url = as_url(db)
start = (
    f"Start monitoring from a shell, e.g.\n\n```\ninspekt monitor --model MODEL.inspekt --source incoming/ "
    f"--every 10s --window 200 --db {url}\n```\n\nand this page shows its history."
)
if sqlite_file(url) is not None and not sqlite_file(url).is_file():
    st.info(f"No monitoring history at {url} yet. {start}")
    st.stop()
try:
    data = load_history(db, last=last)
except InspektError as exc:
    st.error(str(exc))
    st.stop()
if not data["images"]:
    st.info(f"The history at {url} is empty. {start}")
    st.stop()

sources = sorted({r["source"] for r in data["images"]})
source = st.selectbox("Source", sources, key="monitor_source") if len(sources) > 1 else sources[0]
data = {
    **data,
    "images": [r for r in data["images"] if r["source"] == source],
    "windows": [w for w in data["windows"] if w["source"] == source],
}
window_ids = {w["id"] for w in data["windows"]}
data["alerts"] = [a for a in data["alerts"] if a["window_id"] in window_ids]
summary = summarize_history(data, url)

columns = st.columns(4)
columns[0].metric("Images", summary["recorded"], help=f"{summary['total_rows']} rows in the database (all sources)")
columns[1].metric("Skipped", summary["skipped"])
columns[2].metric("Drift windows", len(summary["windows"]))
columns[3].metric("Drifted", summary["drifted_windows"])
st.caption(f"{source} · {summary['first']} .. {summary['last']}")
latest = summary["windows"][-1] if summary["windows"] else None
if latest is not None:
    (st.error if latest["drift"] else st.success)(
        f"Latest window ({latest['n']} images, {latest['time']}): "
        + ("**DRIFT** — " + ", ".join(latest["drifted"]) if latest["drift"] else "no drift")
    )

images = pd.DataFrame([r for r in data["images"] if r["status"] == "ok"])
if not images.empty:
    images["time"] = pd.to_datetime(images["time"])
    span = max(1, min(50, len(images) // 5))
    shares = pd.get_dummies(images["label"].astype(str)).astype(float).rolling(span, min_periods=1).mean()
    st.subheader("Label mix over time")
    st.caption(f"share of each label among the last {span} images")
    st.line_chart(shares.set_index(images["time"]))
    st.subheader("Scores over time")
    st.scatter_chart(images, x="time", y="score", color="label")

st.subheader("Drift windows")
if summary["windows"]:
    windows = pd.DataFrame(
        [
            {
                "window": w["id"],
                "time": w["time"],
                "images": w["n"],
                "verdict": "drift" if w["drift"] else "ok",
                "drift score": w["drift_score"],
                "drifted checks": ", ".join(w["drifted"] or []),
            }
            for w in summary["windows"]
        ]
    )
    windows["time"] = pd.to_datetime(windows["time"])
    if windows["drift score"].notna().any():  # points, not bars: a score of 0 (the usual case) stays visible
        st.scatter_chart(windows, x="time", y="drift score", color="verdict")
    st.dataframe(windows, hide_index=True, width="stretch")
else:
    st.caption("No drift window yet: a window is checked every --window images.")
if summary["alerts"]:
    st.subheader("Alerts")
    st.dataframe(pd.DataFrame(summary["alerts"]), hide_index=True, width="stretch")
if summary["skipped_items"]:
    with st.expander(f"Skipped items ({summary['skipped']})"):
        st.dataframe(pd.DataFrame(summary["skipped_items"]), hide_index=True, width="stretch")
