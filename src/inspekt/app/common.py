"""What every workbench page shares: the workspace, the model picker, the enhancement controls,
cached models, and turning uploads into images. Pages only lay things out; the work is the
library's (one Predictor, one enhancement Pipeline, one drift engine)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from inspekt.app.picker import ModelRef, catalogue, default_model, remember, stamp
from inspekt.app.picker import find_bundles as find_bundles  # the workspace's bundles, for the pages and tests
from inspekt.bundle import SUFFIX
from inspekt.card import sanity_failure
from inspekt.enhance import PRESETS, STEPS, Pipeline
from inspekt.errors import InspektError
from inspekt.io import load_image

WORKSPACE_ENV = "INSPEKT_WORKSPACE"
IMAGE_TYPES = ["png", "jpg", "jpeg", "bmp", "tif", "tiff", "webp", "gif"]
MAX_UPLOADED_BUNDLES = 8  # kept in <workspace>/uploads/models; older uploads are deleted
MAX_UPLOAD_PIXELS = 40_000_000  # a bigger upload is refused with a message (the app keeps working)
MODEL_REF = "_model_ref"  # session state: the ModelRef of the chosen, loaded bundle


def workspace() -> Path:
    """The workspace folder (``inspekt app --workspace``; default ``./workspace``)."""
    return Path(os.environ.get(WORKSPACE_ENV, "workspace")).resolve()


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
    """Load the model the picker starts on and run it once, so the user's first prediction is fast
    (ONNX Runtime plans its kernels on the first call)."""
    entries = catalogue(root)
    if not entries:
        return
    path = entries[default_model(root, entries)].path
    try:
        predictor = load_predictor(str(path), stamp(path))
        channels = predictor.card.input.channels
        predictor.predict_arrays([np.zeros((*predictor.card.input.size, 3)[: 2 if channels == 1 else 3], np.uint8)])
    except Exception:
        pass


def card_markdown(card) -> str:
    """The model card in a few lines: task, classes, metrics, input, created."""
    metrics = ", ".join(f"{k} {v:.3f}" for k, v in list(card.metrics.items())[:4] if isinstance(v, (int, float)))
    size = "x".join(str(s) for s in card.input.size)
    return (
        f"**{card.task}** · {card.architecture}  \nclasses: {', '.join(card.classes)}  \n"
        f"input: {size}, {card.input.channels} channel(s), {card.input.resize}  \n"
        f"metrics: {metrics or '-'}  \ncreated: {card.created_at or '-'}"
    )


# Choices that hold across pages: the model, the enhancement (enh_*), the image path and the forms of
# Review and Monitor. Streamlit drops a widget's value when a page without that widget runs, so each
# page change reset them (the picker then fell back to another model).
KEPT_ACROSS_PAGES = (
    "model", "image_path", "review_data", "review_source", "review_issues", "review_split", "review_limit",
    "review_db", "monitor_db", "monitor_last",
)  # fmt: skip


KEPT = "_kept_choices"  # a copy of each kept widget value, which Streamlit's clean-up leaves alone


def _is_kept(key: object) -> bool:
    return key in KEPT_ACROSS_PAGES or str(key).startswith("enh_")


def keep_choices_across_pages(page: str) -> None:
    """Run before every page: copy each kept widget value aside (read only), and when the page changed,
    set them again as plain session values, which the new page's widgets start from (a widget of another
    page with the same key starts from its default otherwise, and the clean-up may have dropped it).
    Only on a page change: setting them on every run would override a newer value from the browser when
    a run is cut short (a slider moved quickly)."""
    kept = st.session_state.setdefault(KEPT, {})
    for key in [k for k in st.session_state if _is_kept(k)]:
        kept[key] = st.session_state[key]
    if st.session_state.get("_page") != page:
        st.session_state["_page"] = page
        for key, value in kept.items():
            st.session_state[key] = value


def forget_choice(key: str) -> None:
    """Remove a kept choice for good (a reset), so that it is not put back on the next page."""
    st.session_state.pop(key, None)
    st.session_state.get(KEPT, {}).pop(key, None)


def model_sidebar(root: Path):
    """Sidebar model picker (one entry per workspace bundle, or an uploaded bundle file, which is
    chosen when it is uploaded); the chosen Predictor and its path, or (None, None) with a message.
    The chosen bundle's ModelRef is ``chosen_model()``."""
    st.session_state[MODEL_REF] = None
    picker = st.sidebar.container()
    entries = catalogue(root, _uploaded_bundle(root))
    if not entries:
        picker.info(f"No models in {root}. Train one (Train page, or `inspekt demo`).")
        return None, None
    if st.session_state.get("model") not in entries:
        st.session_state["model"] = default_model(root, entries)
    if st.session_state.pop("_remember_upload", False):
        remember(root, entries[st.session_state["model"]])
    label = picker.selectbox("Model", list(entries), key="model", on_change=_chosen, args=(root, entries))
    ref = entries[label]
    try:
        predictor = load_predictor(str(ref.path), stamp(ref.path))
    except Exception as exc:
        picker.error(f"cannot load {label}: {exc}")
        return None, None
    st.session_state[MODEL_REF] = ref
    picker.caption(f"model.onnx sha256 {ref.short}…", help=f"{ref.path}\n\n{ref.digest}")
    if not ref.sane:  # chosen by hand: say why it is never the default
        picker.warning(f"This model {sanity_failure(predictor.card, quote=md)}")
    with st.sidebar.expander("Model card", expanded=False):
        st.markdown(card_markdown(predictor.card))
    return predictor, ref.path


def _uploaded_bundle(root: Path) -> tuple[str, Path] | None:
    """The sidebar's bundle upload, kept on disk (named by content) for the Predictor cache; a new
    upload becomes the chosen model."""
    uploaded = st.sidebar.file_uploader("...or upload a bundle (.inspekt)", type=["inspekt"], key="bundle_upload")
    if uploaded is None:
        return None
    data = uploaded.getvalue()
    # named by content: written once, so its mtime (the cache key) stays put across reruns
    target = root / "uploads" / "models" / f"{hashlib.sha1(data).hexdigest()[:12]}-{Path(uploaded.name).name}"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        checking = target.with_name(f".checking-{target.name}")  # named as an upload only once it reads whole
        checking.write_bytes(data)
        problem = _damage(checking)
        if problem is not None:  # refused whole now, not when Grad-CAM first reads its weights
            checking.unlink()
            st.sidebar.error(f"{uploaded.name} cannot be used: {problem.replace(str(checking), uploaded.name)}")
            return None
        checking.replace(target)
        _keep_newest(target.parent, MAX_UPLOADED_BUNDLES)
    label = f"uploaded: {uploaded.name}"
    if st.session_state.get("_bundle_upload_id") != uploaded.file_id:  # a new upload: answer with it
        st.session_state["_bundle_upload_id"] = uploaded.file_id
        st.session_state["model"] = label
        st.session_state["_remember_upload"] = True
    return label, target


def _damage(path: Path) -> str | None:
    """Why a bundle file is unusable (not a bundle, a member that fails its checksum or its card's
    sha256), or None: every member is read once, as the model and Grad-CAM will read them."""
    from inspekt.bundle import MEMBERS, open_bundle

    try:
        bundle = open_bundle(path)
        for name in MEMBERS:
            if bundle.has(name):
                bundle.read(name)
    except InspektError as exc:
        return str(exc)
    except Exception as exc:  # whatever else a damaged file raises: refused, never a traceback in the page
        return f"{path}: not a readable bundle ({type(exc).__name__}: {exc})"
    return None


def _chosen(root: Path, entries: dict[str, ModelRef]) -> None:
    ref = entries.get(st.session_state.get("model"))
    if ref is not None:
        remember(root, ref)


def _keep_newest(folder: Path, count: int) -> None:
    """Delete all but the ``count`` newest uploaded bundles (uploads must not fill the disk)."""
    uploads = sorted(folder.glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in uploads[count:]:
        old.unlink(missing_ok=True)


def _reset_enhancement() -> None:
    for key in [k for k in st.session_state if str(k).startswith("enh_")]:
        forget_choice(key)


def _apply_preset() -> None:
    name = st.session_state.get("enh_preset")
    for key in [k for k in st.session_state if str(k).startswith("enh_on_") or str(k).startswith("enh_p_")]:
        forget_choice(key)
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


@contextmanager
def stopping_on_error(slot):
    """Run a step that shows its progress in ``slot``: the slot is cleared when the step ends, and an
    ``InspektError`` ends the page with its message (the slot cleared first: nothing is drawn after st.stop)."""
    try:
        yield
    except InspektError as exc:
        slot.empty()
        st.error(str(exc))
        st.stop()
    finally:
        slot.empty()


def image_counter(doing: str):
    """An empty slot and its ``advance(n=1)``, which captions it "<doing> ... N images" (a long step's progress)."""
    status, done = st.empty(), [0]

    def advance(n: int = 1) -> None:
        done[0] += n
        status.caption(f"{doing} ... {done[0]} images")

    return status, advance


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


def prediction_log(name: str, pipeline: Pipeline, predictor, prediction, seconds: float) -> str:
    """The JSON prediction log: file, enhancement with parameters, the model (its path, and ``name@hash``
    of its graph as every result names it), its card's version, outputs and timings."""
    from inspekt.bundle import model_version

    card = predictor.card
    return json.dumps(
        {
            "file": name,
            "enhancement": pipeline.to_dict()["steps"],
            "model": str(predictor.bundle.path),
            "model_version": model_version(predictor.bundle),
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


def md(text: object) -> str:
    """``text`` shown literally in Streamlit markdown (file and model names may hold ``*``, ``_``, ``[`` ...;
    a check named ``pixels:grey`` lost ``:grey``, which Streamlit's markdown reads as a directive)."""
    return re.sub(r"([\\`*_{}\[\]()#+\-.!|<>~$:])", r"\\\1", str(text))


def chosen_model() -> ModelRef | None:
    """The bundle chosen (and loaded) in this page's sidebar, or None."""
    return st.session_state.get(MODEL_REF)


class Result:
    """A page's result, tied to the model, the input and the settings that produced it: ``get`` gives
    it back only while all three are unchanged (and forgets it otherwise, so no page shows one
    model's answers under another's name), ``caption`` says which model produced it on what.

    ``source`` names the input for people; ``identity`` tells apart inputs of one name (an upload's
    id); ``model`` is None for results no model took part in.
    """

    def __init__(self, page: str, model: ModelRef | None, source: str, *, identity: Any = None, settings: Any = None):
        self.model, self.source, self._key = model, source, f"_result_{page}"
        made_by = [str(model.path), model.identity] if model else None
        self._tag = json.dumps([made_by, source, identity, settings], sort_keys=True, default=str)

    @property
    def tag(self) -> str:
        """What produced it (model, input, settings): a result derived from this one names it as its identity."""
        return self._tag

    def get(self) -> Any:
        held = st.session_state.get(self._key)
        if held is None or held[0] != self._tag:
            st.session_state.pop(self._key, None)
            return None
        return held[1]

    def store(self, value: Any) -> Any:
        st.session_state[self._key] = (self._tag, value)
        return value

    @property
    def caption(self) -> str:
        by = f"by {md(self.model.label)} · {self.model.short} " if self.model else ""
        return f"{by}on {md(self.source)}"
