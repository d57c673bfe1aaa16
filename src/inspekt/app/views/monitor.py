"""Monitor: the history that ``inspekt monitor`` writes (the same database): totals, label mix and
scores over time, drift windows, alerts and skipped items."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from inspekt.app import common
from inspekt.errors import InspektError
from inspekt.monitor.history import as_url, default_url, sqlite_file
from inspekt.monitor.summary import load_history, summarize_history


def _when(stamp: str | None) -> str:
    """An ISO time stamp as people read it: 2026-12-07 05:57:41 UTC (to the second)."""
    if not stamp:
        return "-"
    moment = pd.Timestamp(stamp)
    if moment.tzinfo is None:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.tz_convert("UTC").strftime("%Y-%m-%d %H:%M:%S UTC")


def _over_time(frame: pd.DataFrame, y: str, color: str, line: bool = False):
    """A chart over wall-clock time whose axis reads hours:minutes:seconds (Vega's default labels
    sub-second ticks ".500" when the points are close together)."""
    import altair as alt

    chart = alt.Chart(frame).mark_line() if line else alt.Chart(frame).mark_circle(size=40)
    return chart.encode(
        x=alt.X("time:T", axis=alt.Axis(format="%H:%M:%S", labelOverlap=True, title="time")),
        y=alt.Y(f"{y}:Q", title=y),
        color=alt.Color(f"{color}:N", title=color, scale=alt.Scale(scheme="tableau10")),  # one hue per label
        tooltip=["time:T", f"{y}:Q", f"{color}:N"],
    )


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
except InspektError as exc:  # the library names the CLI's option; here it is the field above
    st.error(str(exc).replace("give --db with", "give").replace("--db ", "History database ", 1))
    st.stop()
if not data["images"]:
    st.info(f"The history at {url} is empty. {start}")
    st.stop()

overall = summarize_history(data, url)
sources = sorted(overall["sources"])
if len(sources) > 1:  # an overview first: a drifted source must not hide behind the first one's green
    st.subheader("All sources")
    st.dataframe(
        pd.DataFrame(
            [
                {"source": name, "images": s["recorded"], "skipped": s["skipped"], "windows": s["windows"],
                 "drifted windows": s["drifted_windows"], "last image": s["last"]}
                for name, s in overall["sources"].items()
            ]
        ),
        hide_index=True,
        width="stretch",
    )  # fmt: skip
    drifted = [name for name in sources if overall["sources"][name]["drifted_windows"]]
    default = drifted[0] if drifted else sources[0]
    source = st.selectbox("Source", sources, index=sources.index(default), key="monitor_source")
else:
    source = sources[0]
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
st.caption(f"{common.md(source)} · {_when(summary['first'])} .. {_when(summary['last'])}")
latest = summary["windows"][-1] if summary["windows"] else None
if latest is not None:
    (st.error if latest["drift"] else st.success)(
        f"Latest window ({latest['n']} images, {_when(latest['time'])}): "
        + ("**DRIFT** — " + ", ".join(common.md(name) for name in latest["drifted"]) if latest["drift"] else "no drift")
    )

if summary["unlike_training"]:  # the model's answers on these may be meaningless: a person should look
    shown = "; ".join(f"{common.md(u['item'])}: {common.md(u['why'])}" for u in summary["unlike_training_items"][:5])
    st.warning(f"{summary['unlike_training']} image(s) unlike the training images: {shown}")

images = pd.DataFrame([r for r in data["images"] if r["status"] == "ok"])
if not images.empty:
    images["time"] = pd.to_datetime(images["time"])
    span = max(1, min(50, len(images) // 5))
    shares = pd.get_dummies(images["label"].astype(str)).astype(float).rolling(span, min_periods=1).mean()
    st.subheader("Label mix over time")
    st.caption(f"share of each label among the last {span} images")
    mix = shares.assign(time=images["time"]).melt("time", var_name="label", value_name="share")
    st.altair_chart(_over_time(mix, "share", "label", line=True), width="stretch")
    st.subheader("Scores over time")
    st.altair_chart(_over_time(images, "score", "label"), width="stretch")

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
        st.altair_chart(_over_time(windows, "drift score", "verdict"), width="stretch")
    st.dataframe(windows, hide_index=True, width="stretch")
else:
    st.caption("No drift window yet: a window is checked every --window images.")
if summary["alerts"]:
    st.subheader("Alerts")
    st.dataframe(pd.DataFrame(summary["alerts"]), hide_index=True, width="stretch")
if summary["skipped_items"]:
    with st.expander(f"Skipped items ({summary['skipped']})"):
        st.dataframe(pd.DataFrame(summary["skipped_items"]), hide_index=True, width="stretch")
