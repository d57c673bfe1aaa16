"""Inspect: one image (upload or camera) -> enhancement -> the model's prediction, Grad-CAM, what-if.

The verdict comes first; the images follow in one compact row (the original, the enhanced version
when an enhancement is set, the prediction's overlay and reconstruction when the task draws them)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from inspekt.app import common
from inspekt.enhance import STEPS, Pipeline
from inspekt.errors import InspektError


def _inputs(uploads, photo, path: str) -> dict[str, tuple[str, bytes | Path]]:
    """The page's inputs, id -> (name, encoded bytes held in memory, or a file path decoded by
    io.load_image with its guards); the newest last."""
    items = {f"upload:{u.file_id}": (u.name, u.getvalue()) for u in uploads or []}
    if photo is not None:
        items[f"camera:{photo.file_id}"] = ("camera.jpg", photo.getvalue())
    if path:
        items[f"path:{path}"] = (path, Path(path))
    return items


def _readable_uploads(items: dict[str, tuple[str, bytes | Path]]) -> dict[str, tuple[str, bytes | Path]]:
    """The inputs without the uploads that are not images, which are named in one warning (each upload's
    header is read once per session for this, so hundreds of photos do not block the page; the image shown
    is decoded whole, and a damaged body is reported then)."""
    from inspekt.errors import InspektError
    from inspekt.io import image_size

    problems = st.session_state.setdefault("_inspect_problems", {})
    for key, (name, source) in items.items():
        if key.startswith("upload:") and key not in problems:
            try:
                image_size(source)
                problems[key] = None
            except (InspektError, ValueError) as exc:
                problems[key] = f"{name}: {str(exc).split(': ', 1)[-1]}"
    bad = [problems[key] for key in items if problems.get(key)]
    if bad:
        st.warning(f"{len(bad)} upload(s) cannot be read and are left out: " + "; ".join(bad[:5]))
    return {key: item for key, item in items.items() if not problems.get(key)}


def _pick(items: dict[str, tuple[str, bytes | Path]]) -> str:
    """The input to show: the newest one when an input was added (an upload, a photo, a path), else
    the one the user picked."""
    seen = st.session_state.get("_inspect_seen", [])
    added = [key for key in items if key not in seen]
    st.session_state["_inspect_seen"] = list(items)
    if added or st.session_state.get("inspect_image") not in items:
        st.session_state["inspect_image"] = added[-1] if added else list(items)[-1]
    if len(items) == 1:
        return next(iter(items))
    return st.selectbox("Image", list(items), format_func=lambda key: items[key][0], key="inspect_image")


def _images(image: np.ndarray, enhanced: np.ndarray, pipeline: Pipeline, prediction=None) -> np.ndarray | None:
    """One compact row: the original, the enhanced image when something is enhanced, the prediction's
    overlay and reconstruction when it has them; returns the overlay."""
    panels = [(image, f"original {image.shape[1]}x{image.shape[0]}", "")]
    if pipeline.ops:
        panels.append((enhanced, "enhanced", f"enhancement: {pipeline.describe()}"))
    overlay = None
    if prediction is not None and (prediction.mask is not None or prediction.boxes is not None):
        overlay = prediction.overlay(enhanced)
        drawn = "boxes drawn" if prediction.boxes is not None else "regions outlined"
        panels.append((overlay, f"prediction ({drawn})", ""))
        if prediction.reconstruction is not None:
            panels.append((prediction.reconstruction, "what the model expected (reconstruction)", ""))
    for column, (shown, caption, note) in zip(st.columns(4), panels):
        column.image(shown, caption=caption, width="stretch")
        if note:
            column.caption(note)
    return overlay


def _verdict(prediction, result: common.Result, card) -> None:
    st.markdown(f"### {prediction.headline()}")
    st.caption(result.caption)
    for cls, p in prediction.top(5):
        st.progress(min(1.0, float(p)), text=f"{cls} {p:.3f}")
    if prediction.describe():
        st.caption(prediction.describe())
    if prediction.ood_note():  # this image, not the model: a warning beside its verdict
        st.warning(f"{prediction.ood_note()}: the verdict may not mean much for it.")
    if card.notes:  # the model's notes, once, not as warnings on every prediction
        with st.expander(f"About this model ({len(card.notes)} note{'s' if len(card.notes) > 1 else ''})"):
            for note in card.notes:
                st.caption(common.md(note))


def _gradcam(name: str, enhanced: np.ndarray) -> np.ndarray | None:
    from inspekt.tasks.classify.explain import METHODS  # torch: imported only when asked for

    method = st.selectbox("Method", list(METHODS))
    opacity = st.slider("Opacity", 0.0, 1.0, 0.5, 0.05)
    try:
        explanation = common.load_explainer(str(model_path), common.stamp(model_path), method).explain(
            enhanced, opacity=opacity, source=name
        )
    except InspektError as exc:
        st.error(str(exc))
        return None
    cam_column = st.columns(4)[0]
    cam_column.image(explanation.overlay, width="stretch")
    cam_column.caption(f"{method} for {explanation.target} (layer {explanation.layer})")
    return explanation.overlay


def _downloads(name: str, source, enhanced: np.ndarray, overlay, log: str | None) -> None:
    stem = name.rsplit(".", 1)[0]
    buttons = st.columns(4)
    buttons[0].download_button(
        "Download enhanced PNG", common.png_bytes(enhanced), file_name=f"{stem}_enhanced.png", mime="image/png"
    )
    if overlay is not None:
        buttons[1].download_button(
            "Download overlay PNG", common.png_bytes(overlay), file_name=f"{stem}_overlay.png", mime="image/png"
        )
    if log is not None:
        buttons[2].download_button(
            "Download JSON log", log, file_name=f"{stem}_prediction.json", mime="application/json"
        )
    if isinstance(source, bytes) and st.checkbox(
        "save to workspace", help=f"keep a copy of the upload in {root / 'uploads'}"
    ):
        target = root / "uploads" / Path(name).name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(source)
        st.caption(f"saved {target}")


def _enhanced(image: np.ndarray, name: str, identity: list) -> np.ndarray:
    """The image through the sidebar's enhancement, computed once per image and pipeline (a toggle, a slider
    or a what-if pick reran it: non-local means takes seconds on a photo), with a spinner while it runs."""
    if not pipeline.ops:
        return image
    done = common.Result("enhanced", None, name, identity=identity, settings=pipeline.to_dict())
    if done.get() is None:
        with st.spinner(f"enhancing {name} ({pipeline.describe()}) ..."):
            try:
                done.store(pipeline(image))
            except Exception as exc:  # an enhancement that cannot apply to this image must not end the session
                st.error(f"The enhancement failed on {name}: {exc}")
                return image
    return done.get()


def _what_if(image: np.ndarray, name: str, prediction, answer: common.Result) -> None:
    st.subheader("What if?")
    st.caption(
        "The model's confidence in its prediction as one enhancement parameter sweeps its range "
        "(on top of the current pipeline)."
    )
    choices = [f"{s.name}: {p.name}" for s in STEPS.values() for p in s.params if not p.choices]
    picked = st.selectbox("Parameter", choices, index=None, placeholder="choose a parameter to sweep", key="whatif")
    if not picked:
        return
    step_name, param_name = picked.split(": ")
    param = STEPS[step_name].param(param_name)
    values = np.linspace(param.low, param.high, 9)
    if param.integer:
        values = np.unique([v + (1 - v % 2 if param.odd else 0) for v in np.round(values).astype(int)])
        values = values[values <= param.high]
    names = [n for n, _ in pipeline.ops]
    # sweep the step where it is in the user's pipeline (its other settings kept), or add it at the end
    base = pipeline if step_name in names else Pipeline.of([*pipeline.ops, (step_name, {})])
    index = [n for n, _ in base.ops].index(step_name)
    swept = common.Result("whatif", answer.model, name, identity=answer.tag, settings=picked)
    if swept.get() is None:
        curve, bar = [], st.progress(0.0, text=f"sweeping {picked} over {len(values)} values ...")
        try:
            for i, value in enumerate(values):
                result = predictor.predict_arrays([base.with_param(index, param_name, value)(image)], [name])[0]
                measure, confidence = predictor.task.confidence(prediction, result)
                curve.append({param_name: float(value), measure: confidence})
                bar.progress((i + 1) / len(values), text=f"sweeping {picked}: {i + 1} of {len(values)} values")
        except Exception as exc:  # an enhancement that cannot apply to this image must not end the session
            st.error(f"The sweep stopped at {param_name}={value}: {exc}")
        bar.empty()
        swept.store(curve)
    if swept.get():
        st.line_chart(pd.DataFrame(swept.get()).set_index(param_name))


root = common.workspace()
predictor, model_path = common.model_sidebar(root)
pipeline = common.enhancement_sidebar()

st.title("Inspect")
st.caption('Uploaded images are processed in memory and never written to disk unless you tick "save to workspace".')
uploads = st.file_uploader("Images (drag and drop one or many)", type=common.IMAGE_TYPES, accept_multiple_files=True)
photo = st.camera_input("Take a photo with this device's camera") if st.toggle("Use the camera") else None
items = _readable_uploads(
    _inputs(uploads, photo, st.text_input("...or the path of an image file on this machine", key="image_path").strip())
)
if not items:
    st.info("Upload an image or take a photo to start.")
    st.stop()

key = _pick(items)
name, source = items[key]
image, problem = common.decode(name, source)
if problem:
    st.error(f"Not an image we can read: {problem}")
    st.stop()
changed = common.stamp(source) if isinstance(source, Path) else None  # a file replaced at the same path
enhanced = _enhanced(image, name, [key, changed])

if predictor is None:
    _images(image, enhanced, pipeline)
    _downloads(name, source, enhanced, None, None)
    st.info("Choose a model in the sidebar to predict.")
    st.stop()

card, task = predictor.card, predictor.task
moved = {c.keyword: st.sidebar.slider(c.label, 0.0, 1.0, c.value, 0.01, help=c.help) for c in task.controls(card)}
if moved:
    predictor = predictor.with_threshold(**moved)
answer = common.Result(
    "inspect", common.chosen_model(), name, identity=[key, changed], settings=[pipeline.to_dict(), moved]
)
if answer.get() is None:
    t0 = time.perf_counter()
    with st.spinner(f"predicting {name} ..."):
        answer.store((predictor.predict_arrays([enhanced], [name])[0], time.perf_counter() - t0))
prediction, seconds = answer.get()

_verdict(prediction, answer, card)
overlay = _images(image, enhanced, pipeline, prediction)
if prediction.extra.get("components"):
    st.dataframe(pd.DataFrame(prediction.extra["components"]), width="stretch")
if prediction.boxes is not None:  # how many of each class, then every box
    counts = pd.DataFrame(prediction.extra["counts"].items(), columns=["class", "boxes"])
    st.dataframe(counts, width="stretch", hide_index=True, key="box_counts")
    if prediction.boxes:
        st.dataframe(pd.DataFrame(prediction.boxes), width="stretch", key="box_list")
if task.explainable and st.toggle("Grad-CAM", help="where the model looked for the predicted class", key="gradcam"):
    cam = _gradcam(name, enhanced)
    overlay = overlay if cam is None else cam
st.caption(f"{seconds * 1000:.0f} ms (model {prediction.time_ms:.0f} ms)")
_downloads(name, source, enhanced, overlay, common.prediction_log(name, pipeline, predictor, prediction, seconds))
_what_if(image, name, prediction, answer)
