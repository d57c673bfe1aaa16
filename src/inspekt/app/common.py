"""What every workbench page shares: the workspace, the model picker, the enhancement controls,
cached models, and turning uploads into images. Pages only lay things out; the work is the
library's (one Predictor, one enhancement Pipeline, one drift engine)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from inspekt.bundle import SUFFIX
from inspekt.enhance import PRESETS, STEPS, Pipeline
from inspekt.errors import InspektError
from inspekt.io import load_image

WORKSPACE_ENV = "INSPEKT_WORKSPACE"
IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "gif"]
MAX_UPLOADED_BUNDLES = 8  # kept in <workspace>/uploads/models; older uploads are deleted
MAX_UPLOAD_PIXELS = 40_000_000  # a bigger upload is refused with a message (the app keeps working)


def workspace() -> Path:
    """The workspace folder (``inspekt app --workspace``; default ``./workspace``)."""
    return Path(os.environ.get(WORKSPACE_ENV, "workspace")).resolve()


def find_bundles(root: Path) -> dict[str, Path]:
    """Bundles in the workspace: ``models/*.inspekt`` (and bundle folders there) and every finished
    run's ``runs/<task>/<name>/bundle``; label -> path, newest first."""
    found: list[tuple[float, str, Path]] = []
    for path in sorted((root / "models").glob("*")):
        if path.suffix == SUFFIX or (path / "card.json").is_file():
            found.append((path.stat().st_mtime, f"models/{path.name}", path))
    for card in sorted(root.glob("runs/*/*/bundle/card.json")):
        run = card.parent.parent
        found.append((card.stat().st_mtime, f"runs/{run.parent.name}/{run.name}", card.parent))
    return {label: path for _, label, path in sorted(found, key=lambda t: -t[0])}


@st.cache_resource(show_spinner="loading the model ...", max_entries=8)
def load_predictor(path: str, stamp: float):
    """A Predictor per bundle, loaded once per process (``stamp``: the file's mtime, so a retrained
    bundle at the same path is loaded again)."""
    from inspekt.engine.predictor import Predictor

    return Predictor.load(path)


@st.cache_resource(show_spinner="preparing Grad-CAM ...", max_entries=4)
def load_explainer(path: str, stamp: float, method: str):
    """A Grad-CAM explainer per bundle and method, loaded once per process."""
    from inspekt.tasks.classify.explain import Explainer

    return Explainer.load(path, method=method)


def warm_up(root: Path) -> None:
    """Load the newest workspace model and run it once, so the user's first prediction is fast
    (ONNX Runtime plans its kernels on the first call)."""
    bundles = find_bundles(root)
    if not bundles:
        return
    path = next(iter(bundles.values()))
    try:
        predictor = load_predictor(str(path), stamp(path))
        channels = predictor.card.input.channels
        predictor.predict_arrays([np.zeros((*predictor.card.input.size, 3)[: 2 if channels == 1 else 3], np.uint8)])
    except Exception:
        pass


def stamp(path: Path) -> float:
    return path.stat().st_mtime if path.exists() else 0.0


def card_markdown(card) -> str:
    """The model card in a few lines: task, classes, metrics, input, created."""
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in list(card.metrics.items())[:4] if isinstance(v, (int, float)))
    size = "x".join(str(s) for s in card.input.size)
    return (
        f"**{card.task}** · {card.architecture}  \nclasses: {', '.join(card.classes)}  \n"
        f"input: {size}, {card.input.channels} channel(s), {card.input.resize}  \n"
        f"metrics: {metrics or '-'}  \ncreated: {card.created_at or '-'}"
    )


def model_sidebar(root: Path):
    """Sidebar model picker (workspace bundles, or an uploaded bundle file); the chosen Predictor
    and its path, or (None, None) with a message in the page."""
    bundles = find_bundles(root)
    uploaded = st.sidebar.file_uploader("...or upload a bundle (.inspekt)", type=["inspekt"], key="bundle_upload")
    if uploaded is not None:
        data = uploaded.getvalue()
        # named by content: written once, so its mtime (the cache key) stays put across reruns
        target = root / "uploads" / "models" / f"{hashlib.sha1(data).hexdigest()[:12]}-{Path(uploaded.name).name}"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            _keep_newest(target.parent, MAX_UPLOADED_BUNDLES)
        bundles = {f"uploaded: {uploaded.name}": target, **bundles}
    if not bundles:
        st.sidebar.info(f"No models in {root}. Train one (Train page, or `inspekt demo`).")
        return None, None
    label = st.sidebar.selectbox("Model", list(bundles), key="model")
    path = bundles[label]
    try:
        predictor = load_predictor(str(path), stamp(path))
    except Exception as exc:
        st.sidebar.error(f"cannot load {label}: {exc}")
        return None, None
    with st.sidebar.expander("Model card", expanded=False):
        st.markdown(card_markdown(predictor.card))
    return predictor, path


def _keep_newest(folder: Path, count: int) -> None:
    """Delete all but the ``count`` newest uploaded bundles (uploads must not fill the disk)."""
    uploads = sorted(folder.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in uploads[count:]:
        old.unlink(missing_ok=True)


def _reset_enhancement() -> None:
    for key in [k for k in st.session_state if str(k).startswith("enh_")]:
        del st.session_state[key]


def _apply_preset() -> None:
    name = st.session_state.get("enh_preset")
    for key in [k for k in st.session_state if str(k).startswith("enh_on_") or str(k).startswith("enh_p_")]:
        del st.session_state[key]
    for step, params in PRESETS.get(name, []):
        st.session_state[f"enh_on_{step}"] = True
        for key, value in params.items():
            st.session_state[f"enh_p_{step}_{key}"] = value


def enhancement_sidebar() -> Pipeline:
    """Enhancement controls built from the step table (presets, one toggle and its sliders per
    step, reset); returns the Pipeline they describe."""
    st.sidebar.subheader("Enhancement")
    st.sidebar.selectbox("Preset", ["(none)", *PRESETS], key="enh_preset", on_change=_apply_preset)
    st.sidebar.button("Reset enhancement", on_click=_reset_enhancement)
    ops = []
    for step in STEPS.values():
        if not st.sidebar.toggle(step.label, key=f"enh_on_{step.name}"):
            continue
        params = {}
        for p in step.params:
            key = f"enh_p_{step.name}_{p.name}"
            if p.choices:
                params[p.name] = st.sidebar.selectbox(
                    f"{step.name}: {p.name}",
                    p.choices,
                    key=key,
                    index=p.choices.index(p.default) if key not in st.session_state else None,
                )
            else:
                cast = int if p.integer else float
                st.session_state.setdefault(key, cast(p.default))
                params[p.name] = st.sidebar.slider(
                    f"{step.name}: {p.name}", cast(p.low), cast(p.high), step=cast(p.step), key=key
                )
        ops.append((step.name, params))
    try:
        return Pipeline.of(ops)
    except InspektError as exc:
        st.sidebar.error(str(exc))
        return Pipeline()


def decode(name: str, source: bytes | str | Path) -> tuple[np.ndarray | None, str | None]:
    """An upload (bytes, decoded in memory) or a file path as an image, or the reason it is not one
    (``io.load_image`` guards against folders, FIFOs, missing files and huge images)."""
    try:
        return load_image(source, mode="keep", max_pixels=MAX_UPLOAD_PIXELS), None
    except (InspektError, ValueError) as exc:
        reason = str(exc).split(": ", 1)[-1]
        if "max_pixels" in reason or "INSPEKT_MAX_PIXELS" in reason:
            reason = f"the image is larger than the workbench accepts ({MAX_UPLOAD_PIXELS // 1_000_000} megapixels)"
        return None, f"{name}: {reason}"


def png_bytes(image: np.ndarray) -> bytes:
    """PNG encoding of a uint8 image, in memory."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def prediction_log(name: str, pipeline: Pipeline, path: Path, card, prediction, seconds: float) -> str:
    """The JSON prediction log: file, enhancement with parameters, model id and card version,
    outputs and timings."""
    return json.dumps(
        {
            "file": name,
            "enhancement": pipeline.to_dict()["steps"],
            "model": str(path),
            "model_card": {
                "schema": card.schema_,
                "task": card.task,
                "architecture": card.architecture,
                "created_at": card.created_at,
                "classes": list(card.classes),
            },
            "prediction": prediction.to_dict(),
            "timings_ms": {"total": round(seconds * 1000, 2), "model": round(prediction.time_ms, 2)},
            "logged_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        indent=2,
        default=_json_default,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return str(value)
