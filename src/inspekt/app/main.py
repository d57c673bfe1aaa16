"""The workbench's entry point (``inspekt app`` runs ``streamlit run`` on this file)."""

from __future__ import annotations

import importlib
import threading

import streamlit as st

from inspekt.app import common


@st.cache_resource
def _preload_explainer() -> threading.Thread:
    """Import torch and the Grad-CAM library in the background, once per process: importing them takes
    6-10 s on two cores, which the first Grad-CAM toggle would otherwise wait for."""
    thread = threading.Thread(
        target=importlib.import_module, args=("inspekt.tasks.classify.explain",), name="inspekt-preload", daemon=True
    )
    thread.start()
    return thread


# an emoji: a material icon as the tab icon is fetched from the internet
st.set_page_config(page_title="inspekt workbench", page_icon="🔎", layout="wide")
if "warmed" not in st.session_state:  # once per session; the models themselves are cached per process
    common.warm_up(common.workspace())
    st.session_state["warmed"] = True
_preload_explainer()
st.navigation(
    [
        st.Page("pages/inspect.py", title="Inspect", icon=":material/search:", default=True),
        st.Page("pages/batch.py", title="Batch", icon=":material/folder_open:"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("pages/drift.py", title="Drift", icon=":material/waves:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/monitor.py", title="Monitor", icon=":material/monitoring:"),
    ]
).run()
