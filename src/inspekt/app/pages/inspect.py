"""Inspect: one image (upload or camera) -> enhancement -> the model's prediction, Grad-CAM, what-if."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from inspekt.app import common
from inspekt.enhance import STEPS, Pipeline
from inspekt.errors import InspektError

root = common.workspace()
predictor, model_path = common.model_sidebar(root)
pipeline = common.enhancement_sidebar()

st.title("Inspect")
st.caption('Uploaded images are processed in memory and never written to disk unless you tick "save to workspace".')
uploads = st.file_uploader("Images (drag and drop one or many)", type=common.IMAGE_TYPES, accept_multiple_files=True)
photo = st.camera_input("Take a photo with this device's camera") if st.toggle("Use the camera") else None
path = st.text_input("...or the path of an image file on this machine", key="image_path").strip()
# name -> encoded bytes (uploads, held in memory) or a file path (decoded by io.load_image, with its guards)
items = [(u.name, u.getvalue()) for u in uploads or []] + ([("camera.jpg", photo.getvalue())] if photo else [])
if path:
    items.append((path, Path(path)))
if not items:
    st.info("Upload an image or take a photo to start.")
    st.stop()

name = st.selectbox("Image", [n for n, _ in items]) if len(items) > 1 else items[0][0]
image, problem = common.decode(name, dict(items)[name])
if problem:
    st.error(f"Not an image we can read: {problem}")
    st.stop()
try:
    enhanced = pipeline(image)
except Exception as exc:  # an enhancement that cannot apply to this image must not end the session
    st.error(f"The enhancement failed on {name}: {exc}")
    enhanced = image

left, right = st.columns(2)
left.image(image, caption=f"original {image.shape[1]}x{image.shape[0]}", width="stretch")
right.image(enhanced, caption="enhanced", width="stretch")
right.caption(f"enhancement: {pipeline.describe()}")
source = dict(items)[name]
if isinstance(source, bytes) and st.checkbox(
    "save to workspace", help=f"keep a copy of the upload in {root / 'uploads'}"
):
    target = root / "uploads" / Path(name).name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source)
    st.caption(f"saved {target}")
st.download_button(
    "Download enhanced PNG",
    common.png_bytes(enhanced),
    file_name=f"{name.rsplit('.', 1)[0]}_enhanced.png",
    mime="image/png",
)

if predictor is None:
    st.info("Choose a model in the sidebar to predict.")
    st.stop()

card, task = predictor.card, predictor.task
moved = {c.keyword: st.sidebar.slider(c.label, 0.0, 1.0, c.value, 0.01, help=c.help) for c in task.controls(card)}
if moved:
    predictor = predictor.with_threshold(**moved)

t0 = time.perf_counter()
prediction = predictor.predict_arrays([enhanced], [name])[0]
seconds = time.perf_counter() - t0
overlay = None

st.subheader("Prediction")
st.markdown(f"### {prediction.headline()}")
for cls, p in prediction.top(5):
    st.progress(min(1.0, float(p)), text=f"{cls} {p:.3f}")
if prediction.mask is not None:
    overlay = prediction.overlay(enhanced)
    panels = st.columns(3 if prediction.reconstruction is not None else 2)
    panels[0].image(enhanced, caption="input (as the model saw it)", width="stretch")
    panels[1].image(overlay, caption="prediction (regions outlined)", width="stretch")
    if prediction.reconstruction is not None:
        panels[2].image(prediction.reconstruction, caption="what the model expected (reconstruction)", width="stretch")
if prediction.describe():
    st.caption(prediction.describe())
if prediction.extra.get("components"):
    st.dataframe(pd.DataFrame(prediction.extra["components"]), width="stretch")
for note in card.notes:
    st.warning(note)
if task.explainable and st.toggle("Grad-CAM", help="where the model looked for the predicted class", key="gradcam"):
    from inspekt.tasks.classify.explain import METHODS  # torch: imported only when asked for

    method = st.selectbox("Method", list(METHODS))
    opacity = st.slider("Opacity", 0.0, 1.0, 0.5, 0.05)
    try:
        explanation = common.load_explainer(str(model_path), common.stamp(model_path), method).explain(
            enhanced, opacity=opacity, source=name
        )
        overlay = explanation.overlay
        cam_column = st.columns(2)[0]
        cam_column.image(overlay, width="stretch")
        cam_column.caption(f"{method} for {explanation.target} (layer {explanation.layer})")
    except InspektError as exc:
        st.error(str(exc))
st.caption(f"{seconds * 1000:.0f} ms (model {prediction.time_ms:.0f} ms)")

downloads = st.columns(2)
if overlay is not None:
    downloads[0].download_button(
        "Download overlay PNG",
        common.png_bytes(overlay),
        file_name=f"{name.rsplit('.', 1)[0]}_overlay.png",
        mime="image/png",
    )
downloads[1].download_button(
    "Download JSON log",
    common.prediction_log(name, pipeline, model_path, card, prediction, seconds),
    file_name=f"{name.rsplit('.', 1)[0]}_prediction.json",
    mime="application/json",
)

st.subheader("What if?")
st.caption(
    "The model's confidence in its prediction as one enhancement parameter sweeps its range "
    "(on top of the current pipeline)."
)
choices = [f"{s.name}: {p.name}" for s in STEPS.values() for p in s.params if not p.choices]
picked = st.selectbox("Parameter", choices, index=None, placeholder="choose a parameter to sweep", key="whatif")
if picked:
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
    curve = []
    try:
        for value in values:
            result = predictor.predict_arrays([base.with_param(index, param_name, value)(image)], [name])[0]
            measure, confidence = task.confidence(prediction, result)
            curve.append({param_name: float(value), measure: confidence})
    except Exception as exc:  # an enhancement that cannot apply to this image must not end the session
        st.error(f"The sweep stopped at {param_name}={value}: {exc}")
    if curve:
        st.line_chart(pd.DataFrame(curve).set_index(param_name))
