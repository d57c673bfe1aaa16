"""Evaluate: a labelled dataset -> the task's metrics and tables, and its figures (classifiers: the
confusion matrix, ROC / PR curves and the errors with Grad-CAM; segmentation: the worst overlays;
anomaly: the score histogram and the worst false positives / negatives)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from inspekt.app import common
from inspekt.engine.evaluator import training_images_note
from inspekt.io import load_image

GALLERY = 12


def _figures(predictor, result, data: str) -> tuple[list, list]:
    """The task's figures of an evaluation, drawn once: the ones it returns, in its order (plots, and for
    some tasks per-image panels), then the images they link to (e.g. the Grad-CAM gallery); at most
    GALLERY per-image panels. Each as (name, image, is a per-image panel)."""
    from inspekt.data import open_dataset

    with tempfile.TemporaryDirectory() as tmp:
        written = predictor.task.write_plots(result, predictor, open_dataset(data), Path(tmp), GALLERY)
        linked = [p for p in sorted(Path(tmp).rglob("*.png")) if p not in written]
        shown = [(p.name, load_image(p)) for p in written + linked if p.suffix == ".png"]
    plots = [(name, image) for name, image in shown if not name[:3].isdigit()]  # panels are numbered: 000_...
    return plots, [(name, image) for name, image in shown if name[:3].isdigit()]


root = common.workspace()
predictor, model_path = common.model_sidebar(root)
st.title("Evaluate")
data = st.text_input("Labelled dataset (folder or CSV)", value=str(root / "data" / "surfaces"))
split = st.selectbox(
    "Split",
    ["default", "test", "val", "train", "all"],
    format_func=lambda s: "test (else val, else all)" if s == "default" else s,
    help="As `inspekt eval`: the test split, else val, else every image. 'all' and 'train' include training images.",
)
if predictor is None:
    st.info("Choose a model in the sidebar.")
    st.stop()
evaluation = common.Result("evaluate", common.chosen_model(), data.strip(), settings=split)
if st.button("Evaluate", type="primary"):
    from inspekt.engine.evaluator import evaluate

    status, advance = common.image_counter("evaluating")
    with common.stopping_on_error(status):
        result = evaluate(model_path, data, split=None if split == "default" else split, progress=advance)
        status.caption("drawing the figures ...")
        evaluation.store((result, _figures(predictor, result, data)))
if evaluation.get() is None:
    st.stop()
result, figures = evaluation.get()
st.caption(evaluation.caption)

task, metrics = predictor.task, result.metrics
cells = st.columns(len(task.headline))
for cell, key in zip(cells, task.headline):
    value = metrics.get(key)
    cell.metric(key, "-" if value is None else f"{value:.3f}")
INSPECTION = (("escape rate", "escape_rate"), ("false-reject rate", "false_reject_rate"))
inspection = [(name, metrics.get(key)) for name, key in INSPECTION]
if any(value is not None for _, value in inspection):  # defects passed as OK, OK parts rejected, at the decision
    for cell, (name, value) in zip(st.columns(4), inspection):
        cell.metric(name, "-" if value is None else f"{value:.1%}")
note = training_images_note(result.split, result.metrics)
if note:
    st.warning(f"Split {result.split}: {note}.")
advice = task.threshold_note(result)
if advice:
    st.warning(f"Threshold: {advice}.")
if result.skipped:
    st.warning(
        f"skipped {len(result.skipped)} file(s): " + "; ".join(f"{s.path}: {s.reason}" for s in result.skipped[:5])
    )
for table in task.summary(result)[1:]:  # the first is the headline above
    st.subheader(table.title)
    st.dataframe(pd.DataFrame(table.rows, columns=table.columns).set_index(table.columns[0]), width="stretch")

st.subheader("Figures: " + task.figures)
plots, panels = figures
columns = st.columns(2)  # wide enough to read their axes and legends
for k, (name, image) in enumerate(plots):
    columns[k % 2].image(image, caption=name, width="stretch")
if panels:
    st.caption(
        f"The {len(panels)} worst images (at most {GALLERY} here; `inspekt eval --plots DIR` writes the task's full "
        "set), each labelled with what went wrong"
    )
    columns = st.columns(3)
    for k, (name, image) in enumerate(panels):
        columns[k % 3].image(image, caption=name, width="stretch")
