"""Review: walk a queue of suspect images (data issues, an evaluation's errors, predictions near the
decision, the monitor's drifted windows), see the label and mask beside the model's answer, and fix
them: keep, relabel, exclude, redraw the mask. Fixes go to the dataset's corrections.csv (a new
version of it; the files are never touched) and "Retrain with corrections" trains on that version
and compares the new run with the old one.

Keys: A keep the label · 1-9 relabel to that class · X exclude (again: include) · S skip · B back ·
U undo this image's newest fix · M save the drawn mask."""

from __future__ import annotations

import re
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from inspekt.app import common, jobs
from inspekt.curate import review
from inspekt.data.corrections import Corrections
from inspekt.errors import InspektError

QUEUE, POS, NOTE, CANVAS, JOB = "_review_queue", "_review_pos", "_review_note", "_review_canvas", "_review_job"


def _build(source: str, data: str, setting: str, predictor, status) -> None:
    """Build the queue the user asked for and keep it in the session, with each image as its files
    say (the fixes are read from corrections.csv; an excluded image can be found and included again)."""
    from inspekt.data import open_dataset

    original, dataset = open_dataset(data, original=True), open_dataset(data)
    Corrections(dataset.root, root)  # a dataset that cannot be corrected is refused before its queue is walked
    if source == "issues":
        queue = review.from_issues(setting, original)
    elif source == "errors":
        from inspekt.engine.evaluator import evaluate

        queue = review.from_evaluation(evaluate(predictor, dataset, split=setting or None, progress=status), dataset)
    elif source == "threshold":
        queue = review.near_threshold(predictor, dataset, int(setting or 50), progress=status)
    else:
        queue = review.monitor_flagged(setting or None, original)
    as_read = {s.path: s for s in original.samples}
    items = [replace(item, sample=as_read.get(item.sample.path, item.sample)) for item in queue.items]
    classes = sorted(set(original.classes) | set(dataset.classes))
    st.session_state[QUEUE] = {"data": data, "root": str(dataset.root), "items": items, "classes": classes}
    st.session_state[QUEUE]["masks"] = dataset.mask_layout
    # the task the queue's answers and retrain need: the judging model's (label issues: classify, mask
    # issues: segment; other kinds need none), or the chosen model's, which built it; a monitor's: any task
    task = predictor.card.task if predictor is not None and source in ("errors", "threshold") else None
    if source == "issues":
        task = "classify" if "label" in queue.kinds else "segment" if "mask" in queue.kinds else None
    st.session_state[QUEUE]["task"] = task
    st.session_state[POS] = 0
    note = f"{len(items)} image(s) to review"
    if queue.missing:
        note += f"; {len(queue.missing)} entries name no image of the dataset (e.g. {queue.missing[0]})"
    st.session_state[NOTE] = note


def _queue_form(predictor) -> None:
    data = st.text_input("Dataset (folder or CSV)", value=str(root / "data" / "surfaces"), key="review_data").strip()
    source = st.selectbox("Queue", list(review.SOURCES), format_func=review.SOURCES.get, key="review_source")
    setting = {
        "issues": lambda: st.text_input("Issues CSV", value=str(root / "issues.csv"), key="review_issues"),
        "errors": lambda: st.selectbox(
            "Split", ["", "test", "val", "train", "all"], format_func=lambda s: s or "default", key="review_split"
        ),
        "threshold": lambda: str(st.number_input("How many", 1, 1000, 50, key="review_limit")),
        "monitor": lambda: st.text_input("Monitor history (empty: the workspace's)", value="", key="review_db"),
    }[source]()
    needs_model = source in ("errors", "threshold")
    if st.button("Build the queue", type="primary", disabled=needs_model and predictor is None):
        status, advance = common.image_counter("predicting")
        try:
            _build(source, data, setting.strip(), predictor, advance)
        except InspektError as exc:
            st.error(str(exc))
        finally:
            status.empty()


def _move(step: int) -> None:
    count = len(st.session_state[QUEUE]["items"])
    st.session_state[POS] = max(0, min(count, st.session_state[POS] + step))


def _fix(action: str, value: str | None = None) -> None:
    """Record one fix of the current image (a button's callback) and go on to the next image."""
    queue = st.session_state[QUEUE]
    item = queue["items"][st.session_state[POS]]
    fixes = Corrections(queue["root"], root)
    name = item.sample.path.name
    try:
        if action == "keep":
            message, step = f"{name}: kept {fixes.value(item.sample, 'label') or 'its label'}", 1
        elif action == "label":
            row = fixes.set_label(item.sample, value or "")
            message, step = f"{name}: " + (f"{row.old} -> {row.new}" if row else f"already {value}"), 1
        elif action == "exclude":
            excluded = fixes.value(item.sample, "exclude") == "true"
            fixes.exclude(item.sample, not excluded)
            message, step = f"{name}: {'included again' if excluded else 'excluded'}", 0 if excluded else 1
        else:
            row = fixes.undo(item.sample)
            message, step = f"{name}: undid the {row.field} fix ({row.old} -> {row.new})", 0
    except InspektError as exc:
        message, step = f"not recorded: {exc}", 0
    st.session_state[NOTE] = message + (f" · {fixes.csv_path}" if fixes.csv_path else "")
    _move(step)


def _actions(classes: list[str]) -> None:
    """The buttons, each with its key (Streamlit's ``shortcut``: pressed anywhere on the page)."""
    row = st.columns(6)
    row[0].button("Keep label", on_click=_fix, args=("keep",), shortcut="A", width="stretch")
    row[1].button("Skip", on_click=_move, args=(1,), shortcut="S", width="stretch")
    row[2].button("Back", on_click=_move, args=(-1,), shortcut="B", width="stretch")
    row[3].button("Exclude / include", on_click=_fix, args=("exclude",), shortcut="X", width="stretch")
    row[4].button("Undo", on_click=_fix, args=("undo",), shortcut="U", width="stretch")
    labels = st.columns(max(len(classes), 1))
    for k, (cell, name) in enumerate(zip(labels, classes)):
        key = str(k + 1) if k < 9 else None
        cell.button(
            f"{name}", key=f"relabel-{name}", on_click=_fix, args=("label", name), shortcut=key, width="stretch"
        )


def _current_mask(fixes: Corrections, item) -> np.ndarray | None:
    value = fixes.value(item.sample, "mask")
    if not value:
        return None
    path = Path(value) if Path(value).is_absolute() else fixes.base / value
    image, problem = common.decode(path.name, path)
    if problem:  # shown as no mask, and said so: drawing one replaces it
        st.warning(f"Its mask cannot be read: {problem}")
        return None
    return (image if image.ndim == 2 else image[..., 0]) > 127


def _panels(image: np.ndarray, mask, label: str, excluded: bool, prediction, answer, cam) -> None:
    from inspekt.draw import heat_overlay, overlay_mask

    cells = st.columns(3)
    shown = image if mask is None else overlay_mask(image, mask.astype(np.uint8))
    cells[0].image(shown, width="stretch")
    cells[0].markdown(f"**label: {common.md(label)}**" + (" · **excluded**" if excluded else ""))
    cells[1].image(prediction.overlay(image) if prediction.mask is not None else image, width="stretch")
    cells[1].markdown(f"**model: {common.md(prediction.headline())}**")
    cells[1].caption(answer.caption)
    if cam is not None:
        cells[2].image(cam[0], width="stretch")
        cells[2].caption(cam[1])
    elif prediction.heatmap is not None:
        cells[2].image(heat_overlay(image, prediction.heatmap), width="stretch")
        cells[2].caption("the model's map (red: defect / anomalous)")


def _explain(model_path: Path, image: np.ndarray, name: str):
    from inspekt.tasks.classify.explain import METHODS  # torch: imported only when asked for

    method = next(iter(METHODS))
    try:
        explanation = common.load_explainer(str(model_path), common.stamp(model_path), method).explain(
            image, source=name
        )
    except InspektError as exc:
        st.error(str(exc))
        return None
    return explanation.overlay, f"{method} for {explanation.target}"


def _mask_editor(fixes: Corrections, item, image: np.ndarray, mask) -> None:
    """Brush, eraser or polygon over the image with its mask; "Save mask" writes a new mask file."""
    try:
        from streamlit_drawable_canvas import st_canvas
    except Exception as exc:  # the component registers itself only inside a running app
        st.info(f"Mask drawing is not available here ({type(exc).__name__}); run the workbench with inspekt app.")
        return
    from PIL import Image

    from inspekt.draw import overlay_mask

    left, right = st.columns([1, 3])
    tool = left.radio("Tool", ["brush", "eraser", "polygon", "erase polygon"], key="review_tool")
    width = left.slider("Brush size", 2, 60, 16, key="review_brush")
    colour = review.ERASE if "eras" in tool else review.PAINT
    scale = 480 / image.shape[1]
    shown = image if mask is None else overlay_mask(image, mask.astype(np.uint8))
    with right:
        drawn = st_canvas(
            fill_color=colour,
            stroke_width=width,
            stroke_color=colour,
            background_image=Image.fromarray(shown).resize((480, max(1, round(image.shape[0] * scale)))),
            height=max(1, round(image.shape[0] * scale)),
            width=480,
            drawing_mode="polygon" if "polygon" in tool else "freedraw",
            return_image_data=True,
            key=f"canvas-{item.sample.path}-{st.session_state.get(CANVAS, 0)}",
        )
    strokes = drawn.image_data if drawn.json_data and drawn.json_data.get("objects") else None
    if left.button("Save mask", shortcut="M", disabled=strokes is None):
        new = review.mask_from_strokes(strokes, mask, image.shape[:2])
        if new is not None:
            row = fixes.set_mask(item.sample, new)
            st.session_state[NOTE] = f"{item.sample.path.name}: new mask {row.new if row else '(unchanged)'}"
            st.session_state[CANVAS] = st.session_state.get(CANVAS, 0) + 1
            st.rerun()


def _walk(predictor, model_path: Path) -> None:
    queue, pos = st.session_state[QUEUE], st.session_state.get(POS, 0)
    if pos >= len(queue["items"]):
        st.success(f"Queue done ({len(queue['items'])} images). Build another, or retrain below.")
        st.button("Back", on_click=_move, args=(-1,), shortcut="B")
        return
    item = queue["items"][pos]
    fixes = Corrections(queue["root"], root)
    st.markdown(f"**{pos + 1} / {len(queue['items'])}** · `{item.sample.path.name}` · {common.md(item.why)}")
    if item.suggested:
        st.caption(f"suggested label: {common.md(item.suggested)}")
    _actions(queue["classes"])
    image, problem = common.decode(item.sample.path.name, item.sample.path)
    if problem:
        st.error(f"Cannot show it: {problem}. Skip it (S) or exclude it (X).")
        return
    answer = common.Result(
        "review", common.chosen_model(), fixes.key(item.sample.path), identity=common.stamp(item.sample.path)
    )
    if answer.get() is None:
        answer.store(predictor.predict_arrays([image], [item.sample.path.name])[0])
    explain = predictor.task.explainable and st.toggle("Grad-CAM", key="review_gradcam")
    cam = _explain(model_path, image, item.sample.path.name) if explain else None
    mask = _current_mask(fixes, item)
    label = fixes.value(item.sample, "label") or "(none)"
    _panels(image, mask, label, fixes.value(item.sample, "exclude") == "true", answer.get(), answer, cam)
    with st.expander("Correct the mask", expanded=mask is not None or queue["masks"]):
        _mask_editor(fixes, item, image, mask)


def _retrain(task: str, data: str, old: Path | None, card) -> None:
    name = st.session_state["review_run"].strip()
    if not re.fullmatch(r"[\w.-]+", name):
        st.session_state[NOTE] = f"run name {name!r}: use letters, digits, '-', '_' or '.' only"
        return
    options = {"epochs": int(st.session_state["review_epochs"])}
    if old is None:  # not one of this workspace's runs: its architecture and input size
        options |= {"model": card.architecture, "imgsz": card.input.size[0]}
    job = jobs.start(root, task, data, name, options, config=old / "config.yaml" if old else None)
    st.session_state[JOB] = (job.name, str(old) if old else None)
    st.session_state[NOTE] = f"started {job.name} (process {job.pid}) on the corrected {data}"


def _retrain_form(predictor, model_path: Path) -> None:
    st.subheader("Retrain with corrections")
    queue = st.session_state.get(QUEUE)
    if queue is None:
        st.caption("Build a queue first: the run trains on its dataset, corrections applied.")
        return
    fixes = Corrections(queue["root"], root)
    st.caption(f"{len(fixes.rows())} correction row(s) in {fixes.csv_path or '(none yet)'}")
    old = review.old_run(model_path, root)
    planned = None
    if old is not None:
        import yaml

        planned = (yaml.safe_load((old / "config.yaml").read_text(encoding="utf-8")) or {}).get("epochs")
        st.caption(f"compared with the chosen model's run, {old.parent.name}/{old.name}, when it is done")
    else:
        st.caption("the chosen model is not a run of this workspace: its architecture and input size are used")
    st.number_input("Epochs", 1, 500, planned if isinstance(planned, int) else 10, key="review_epochs")
    st.session_state.setdefault("review_run", f"corrected-{time.strftime('%Y%m%d-%H%M%S')}")
    st.text_input("Run name", key="review_run")
    st.button(
        "Retrain with corrections",
        on_click=_retrain,
        args=(predictor.card.task, queue["data"], old, predictor.card),
        type="primary",
    )


def _comparison() -> None:
    """The retrain's progress, then the old and new run side by side (``inspekt runs compare``)."""
    name, old = st.session_state[JOB]
    job = next((j for j in jobs.jobs(root) if j.name == name), None)
    if job is None:
        return
    status = job.status()
    st.caption(f"{job.name}: {status} · epoch {len(job.history)} / {job.epochs or '?'}")
    if status != "done" or old is None:
        return
    try:
        figures, differences = review.compare(old, job.run_dir)
    except InspektError as exc:
        st.error(str(exc))
        return
    st.markdown(f"**before** {common.md(Path(old).name)} · **after** {common.md(job.name)}")
    st.dataframe(pd.DataFrame(figures, index=["before", "after"]).drop(columns=["run"]), width="stretch")
    if differences:
        st.caption("settings that differ: " + "; ".join(f"{k}: {v[0]} -> {v[1]}" for k, v in differences.items()))


root = common.workspace()
predictor, model_path = common.model_sidebar(root)
st.title("Review")
st.caption("Keys: A keep · 1-9 relabel · X exclude · S skip · B back · U undo · M save mask")
_queue_form(predictor)
if NOTE in st.session_state:
    st.info(st.session_state[NOTE])
needed = st.session_state.get(QUEUE, {}).get("task")
if predictor is not None and needed and predictor.card.task != needed:  # e.g. an anomaly model on a label queue
    st.warning(
        f"This queue holds {needed} data, and the sidebar's model was trained for {predictor.card.task}: choose a "
        f"{needed} model in the sidebar to see its answers and to retrain."
    )
elif QUEUE in st.session_state and predictor is not None:
    _walk(predictor, model_path)
elif predictor is None:
    st.info("Choose a model in the sidebar.")
if predictor is not None and not (needed and predictor.card.task != needed):
    _retrain_form(predictor, model_path)
if JOB in st.session_state:
    running = any(j.name == st.session_state[JOB][0] and j.status() == "running" for j in jobs.jobs(root))
    st.fragment(_comparison, run_every=3 if running else None)()
