"""Drift: a reference (dataset path, or the chosen model's stored training profile) vs incoming
images (a folder, or uploads held in memory) -> verdict, histograms, property table, domain
classifier, and the HTML / JSON reports."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from inspekt.app import common
from inspekt.drift import check_drift
from inspekt.drift.report import histogram_png, importance_png, property_png, to_dict, write_html

root = common.workspace()
predictor, model_path = common.model_sidebar(root)
st.title("Drift")
kinds = ["the model's training profile", "a dataset folder"] if model_path else ["a dataset folder"]
kind = st.radio("Reference", kinds, horizontal=True)
reference = (
    model_path
    if kind.startswith("the model")
    else st.text_input("Reference folder", value=str(root / "data" / "surfaces"))
)
folder = st.text_input("Incoming folder", value=str(root / "data" / "incoming"))
uploads = st.file_uploader(
    "...or incoming images (held in memory)", type=common.IMAGE_TYPES, accept_multiple_files=True
)
alpha = st.select_slider("False-alarm rate (alpha)", [0.01, 0.05, 0.1], value=0.05)
checked = common.Result(  # the model takes part only when its training profile is the reference
    "drift",
    common.chosen_model() if kind.startswith("the model") else None,
    f"{len(uploads)} uploaded image(s)" if uploads else folder.strip(),
    identity=[u.file_id for u in uploads or []],
    settings=[str(reference), alpha],
)

if st.button("Check drift", type="primary"):
    from inspekt.profiling.profile import profile_chunk

    current = folder.strip()
    if not current and not uploads:
        st.error("Give an incoming folder or upload images.")
        st.stop()
    if isinstance(reference, str) and not reference.strip():
        st.error("Give a reference folder.")
        st.stop()
    progress = st.progress(0.0, text="profiling ...")
    seen = {"n": 0, "total": 1}

    def on_start(side: str, n: int) -> None:
        seen.update(n=0, total=max(1, n), side=side)

    def advance(n: int) -> None:
        seen["n"] += n
        progress.progress(min(1.0, seen["n"] / seen["total"]), text=f"profiling {seen.get('side', '')} images ...")

    with common.stopping_on_error(progress):
        if uploads:
            current = profile_chunk([(u.name, u.getvalue()) for u in uploads])
            if predictor is not None and kind.startswith("the model"):
                from inspekt.engine.reference import model_outputs

                current.model = model_outputs(predictor, [u.getvalue() for u in uploads][:300])
        with st.spinner("running the checks ..."):
            checked.store(check_drift(reference, current, alpha=alpha, progress=advance, on_start=on_start))
result = checked.get()
if result is None:
    st.stop()

(st.error if result.drift else st.warning if result.inconclusive else st.success)(
    f"**{result.verdict}** — {result.n_reference} reference vs {result.n_current} incoming images, alpha {result.alpha}"
)
st.caption(checked.caption)
for note in result.notes:  # under the verdict: an inconclusive one says why here
    st.caption(note)
if result.drifted:
    st.markdown("Drifted: " + ", ".join(f"**{common.md(c.name)}** (effect {c.effect:.2f})" for c in result.drifted))
doc = to_dict(result)
table = pd.DataFrame(
    [
        {
            "check": c["name"],
            "verdict": {"red": "drift", "amber": "small", "green": "ok"}[c["light"]],
            "p adjusted": c["p_adjusted"],
            "effect": c["effect"],
            "min effect": c["min_effect"],
            "reference": c["reference"],
            "current": c["current"],
        }
        for c in doc["checks"]
    ]
)
st.dataframe(table, width="stretch", hide_index=True)
pixels = histogram_png(result)
if pixels:
    st.image(pixels, caption="pixel histograms: reference vs incoming")
names = [c.name for c in result.checks if c.kind == "property"]
columns = st.columns(3)
for k, name in enumerate(names):
    columns[k % 3].image(property_png(result, name))
domain = next((c for c in result.checks if c.kind == "domain"), None)
if domain is not None:
    st.metric(
        "Domain-classifier drift score",
        f"{domain.effect:.2f}",
        help=f"drift when >= {domain.min_effect} "
        f"and significant; AUC {domain.statistic:.3f}, p {domain.p_value:.3g}, adjusted {domain.p_adjusted:.3g}",
    )
    if result.importances:
        st.image(importance_png(result.importances))
for side, skipped in (("reference", result.skipped_reference), ("incoming", result.skipped_current)):
    if skipped:
        st.warning(
            f"skipped {len(skipped)} unreadable {side} file(s):\n\n"
            + "\n\n".join(f"{s.path}: {s.reason}" for s in skipped[:20])
        )
with tempfile.TemporaryDirectory() as tmp:
    html = write_html(result, Path(tmp) / "drift.html").read_bytes()
left, right = st.columns(2)
left.download_button("Download HTML report", html, file_name="drift.html", mime="text/html")
right.download_button(
    "Download JSON report", json.dumps(doc, indent=2), file_name="drift.json", mime="application/json"
)
