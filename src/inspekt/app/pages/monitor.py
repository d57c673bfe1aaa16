"""Monitor: charts from the monitoring history, once continuous monitoring lands."""

from __future__ import annotations

import streamlit as st

st.title("Monitor")
st.info(
    "Continuous monitoring (a drop folder, a camera or a snapshot URL, with history in SQLite) is not "
    "part of this version yet. Until it is, check a batch of incoming images against a model's training "
    "profile on the **Drift** page, or from a shell:\n\n"
    "```\ninspekt drift MODEL.inspekt incoming/ --html drift.html --fail-on-drift\n```\n\n"
    "and schedule that command (cron, a CI job) to watch a folder."
)
