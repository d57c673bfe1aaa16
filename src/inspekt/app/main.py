"""The workbench's entry point (``inspekt app`` runs ``streamlit run`` on this file)."""

from __future__ import annotations

import streamlit as st

from inspekt.app import common

# an emoji: a material icon as the tab icon is fetched from the internet
st.set_page_config(page_title="inspekt workbench", page_icon="🔎", layout="wide")
if "warmed" not in st.session_state:  # once per session; the models themselves are cached per process
    common.warm_up(common.workspace())
    st.session_state["warmed"] = True
page = st.navigation(
    [
        st.Page("views/inspect.py", title="Inspect", icon=":material/search:", default=True),
        st.Page("views/batch.py", title="Batch", icon=":material/folder_open:"),
        st.Page("views/evaluate.py", title="Evaluate", icon=":material/analytics:"),
        st.Page("views/drift.py", title="Drift", icon=":material/waves:"),
        st.Page("views/train.py", title="Train", icon=":material/model_training:"),
        st.Page("views/review.py", title="Review", icon=":material/fact_check:"),
        st.Page("views/monitor.py", title="Monitor", icon=":material/monitoring:"),
    ]
)
common.keep_choices_across_pages(page.url_path)
page.run()
