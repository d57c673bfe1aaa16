"""Train: start a run for any task from a dataset path; it continues in the background if the page
is refreshed or closed, shows live progress and curves, and its bundle joins the model picker."""

from __future__ import annotations

import re
import time

import pandas as pd
import streamlit as st

from inspekt.app import common, jobs
from inspekt.config import TrainConfig
from inspekt.demo import DEMO_DATA
from inspekt.models import list_models
from inspekt.tasks import TASKS

root = common.workspace()
st.title("Train")
task = st.selectbox("Task", list(TASKS), help="anomaly: trained on the normal images only (good, ok, ...)")
data = st.text_input("Dataset (folder or CSV)", value=str(root / "data" / DEMO_DATA.get(task, "")))
left, middle, right = st.columns(3)
models = list_models(task)
model = left.selectbox("Model", models, index=models.index(TASKS[task].default_model))
own_epochs = TASKS[task].configure(TrainConfig(task=task, data=data)).epochs  # as `inspekt train` without --epochs
epochs = middle.number_input(
    "Epochs",
    1,
    500,
    None,
    placeholder="each method's own" if "epochs" in TASKS[task].model_defaults else f"the task's default ({own_epochs})",
    help="empty: the task's own default (anomaly: each method's own), as `inspekt train` without --epochs",
)
imgsz = right.number_input("Image size", 16, 1024, 64, step=16)


def _new_name() -> None:
    """A fresh default run name for the task; a name the user typed is kept (even when the task changes)."""
    st.session_state["run_name"] = st.session_state["run_name_default"] = f"{task}-{time.strftime('%Y%m%d-%H%M%S')}"


typed = st.session_state.get("run_name", "")
if typed in ("", st.session_state.get("run_name_default")) and not typed.startswith(f"{task}-"):
    _new_name()  # first visit, or the task changed under a default name
st.text_input("Run name", key="run_name")


def _refusal() -> str | None:
    """Why the dataset cannot train this task (said now, not in the log of a run that failed)."""
    from inspekt.data import open_dataset
    from inspekt.errors import InspektError
    from inspekt.tasks import tasks_for

    try:
        fits = tasks_for(open_dataset(data))
    except InspektError as exc:
        return str(exc)
    if task not in fits:
        can = ", ".join(fits) or "no task"
        return f"{data} cannot train {task} models (it can train: {can}); give a dataset with what {task} needs"
    return None


def _start() -> None:
    """Start the run (a callback, so the next run's default name can replace this one)."""
    name = st.session_state["run_name"].strip()
    if not re.fullmatch(r"[\w.-]+", name):
        st.session_state["train_message"] = ("error", f"run name {name!r}: use letters, digits, '-', '_' or '.' only")
        return
    refused = _refusal()
    if refused is not None:
        st.session_state["train_message"] = ("error", refused)
        return
    options = {"model": model, "imgsz": int(imgsz)} | ({"epochs": int(epochs)} if epochs else {})
    job = jobs.start(root, task, data, name, options)
    shown = ", ".join(f"{key} {value}" for key, value in options.items())  # what runs, whatever a box shows
    st.session_state["train_message"] = (
        "success",
        f"started {job.name} ({shown}; process {job.pid}); it keeps running if you leave this page",
    )
    _new_name()


st.button("Start training", type="primary", on_click=_start)
if "train_message" in st.session_state:
    kind, text = st.session_state.pop("train_message")
    (st.success if kind == "success" else st.error)(text)


def _per_epoch(frame: pd.DataFrame, columns: list[str]):
    """Lines over whole epochs (the axis never ticks 0.5 of an epoch)."""
    import altair as alt

    long = frame[["epoch", *columns]].melt("epoch", var_name="metric", value_name="value")
    return (
        alt.Chart(long)
        .mark_line(point=True)
        .encode(
            x=alt.X("epoch:Q", axis=alt.Axis(tickMinStep=1, format="d")),
            y=alt.Y("value:Q", title=None),
            color="metric:N",
            tooltip=["epoch:Q", "metric:N", "value:Q"],
        )
    )


def _sanity_warning(bundle) -> None:
    """Say so when a finished run failed its own sanity check (it is then never the default model)."""
    from inspekt.bundle import open_bundle
    from inspekt.card import sanity_failure
    from inspekt.errors import InspektError

    try:
        failure = sanity_failure(open_bundle(bundle).card, quote=common.md)
    except InspektError:
        return
    if failure:
        st.warning(f"This run {failure}. It is not the default model.")


def show_runs() -> None:
    """Every run started here, with progress and curves (refreshed every few seconds while one runs)."""
    runs = jobs.jobs(root)
    if not runs:
        st.info("No runs started from the workbench yet.")
        return
    st.subheader("Runs")
    for job in runs:
        history, total, status = job.history, job.epochs, job.status()
        with st.expander(f"{job.name} · {job.task} · {status}", expanded=job is runs[0]):
            if total:
                st.progress(min(1.0, len(history) / total), text=f"epoch {len(history)} / {total}")
            if status == "running":
                st.button("Stop", key=f"stop-{job.name}", on_click=job.stop, help="As Ctrl-C: keeps the best epoch")
            if history and "epoch" in history[0]:
                frame = pd.DataFrame(history)
                losses = [c for c in ("train_loss", "val_loss", "loss") if c in frame]
                scores = [c for c in frame.columns if c.startswith("val_") and c != "val_loss"][:3]
                st.altair_chart(_per_epoch(frame, losses), width="stretch")
                if scores:
                    st.altair_chart(_per_epoch(frame, scores), width="stretch")
            if job.done:
                st.caption(f"bundle: {job.run_dir / 'bundle'} (in the model picker as runs/{job.task}/{job.name})")
                _sanity_warning(job.run_dir / "bundle")
            elif status != "running":
                if status.startswith("failed: "):
                    st.error(status.removeprefix("failed: "))
                st.code(job.said()[-2000:] or "(no output)", language=None, wrap_lines=True)


running = any(job.status() == "running" for job in jobs.jobs(root))
st.fragment(show_runs, run_every=3 if running else None)()
