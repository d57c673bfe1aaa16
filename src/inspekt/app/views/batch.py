"""Batch: a folder (or a zip upload) -> predictions table with filters, thumbnails, CSV download."""

from __future__ import annotations

import io
import zipfile
from dataclasses import replace
from pathlib import Path

import pandas as pd
import streamlit as st

from inspekt.app import common
from inspekt.errors import InspektError
from inspekt.io import IMAGE_EXTENSIONS, list_images
from inspekt.io.zips import ZipLimitError, ZipLimits, check_members
from inspekt.tasks import thresholds_text

root = common.workspace()
predictor, model_path = common.model_sidebar(root)
pipeline = common.enhancement_sidebar()
st.title("Batch")
folder = st.text_input("Folder of images (searched recursively)", value=str(root / "data" / "incoming"))
archive = st.file_uploader("...or a zip of images (read in memory)", type=["zip"])
if predictor is None:
    st.info("Choose a model in the sidebar.")
    st.stop()


ZIP_LIMITS = ZipLimits(total_bytes=8 * 2**30, member_bytes=256 * 2**20, max_members=20_000, what="zip of images")


class _Member:
    """An image inside the uploaded zip, inflated only when decoded (one at a time: the zip's content
    never sits in memory whole)."""

    def __init__(self, archive: zipfile.ZipFile, name: str):
        self.archive, self.name = archive, name

    def read(self) -> bytes:
        return self.archive.read(self.name)


def _zip_sources(upload) -> tuple[list, list[str]]:
    """The uploaded zip's images as lazy members, and the members refused by the limits (a zip bomb
    is refused from its stated sizes, before it is inflated)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(upload.getvalue()))
    except zipfile.BadZipFile:
        st.error(f"{upload.name} is not a readable zip file.")
        return [], []
    infos = [i for i in archive.infolist() if not i.is_dir() and Path(i.filename).suffix.lower() in IMAGE_EXTENSIONS]
    kept, refused = [], []
    for info in sorted(infos, key=lambda i: i.filename):
        try:
            check_members([info], ZIP_LIMITS, upload.name)
            kept.append(info)
        except ZipLimitError as exc:
            refused.append(str(exc))
    try:
        check_members(kept, ZIP_LIMITS, upload.name)
    except ZipLimitError as exc:
        st.error(str(exc))
        return [], refused
    return [(i.filename, _Member(archive, i.filename)) for i in kept], refused


def _load_sources() -> tuple[list, list[str]]:
    if archive is not None:
        return _zip_sources(archive)
    if not folder.strip():
        st.error("Give a folder of images, or upload a zip.")
        return [], []
    try:
        return [(str(p), p) for p in list_images(folder.strip())], []
    except InspektError as exc:  # a missing folder is a message, not a crash
        st.error(str(exc))
        return [], []


def _image(name: str, data) -> tuple:
    """Decode a zip member in memory, or a file through io.load_image (missing files, FIFOs ... are reported)."""
    return common.decode(name, data.read() if isinstance(data, _Member) else data)


def _predict(sources: list, skipped: list[str]) -> tuple[list, list[str]]:
    results = []
    bar = st.progress(0.0, text=f"predicting {len(sources)} images ...")
    for i in range(0, len(sources), 16):
        chunk = sources[i : i + 16]
        good = []
        for name, data in chunk:
            image, problem = _image(name, data)
            if problem:
                skipped.append(f"{name}: {problem.split(': ', 1)[-1]}")
            else:
                good.append((name, image))
        if good:
            results += predictor.predict_arrays(
                [image for _, image in good], [name for name, _ in good], enhance=pipeline
            )
        done = min(len(sources), i + len(chunk))
        bar.progress(done / len(sources), text=f"{done} / {len(sources)}")
    bar.empty()
    return results, skipped


batch = common.Result(
    "batch",
    common.chosen_model(),
    archive.name if archive is not None else folder.strip(),
    identity=archive.file_id if archive is not None else None,
    settings=pipeline.to_dict(),
)
if st.button("Predict", type="primary"):
    sources, refused = _load_sources()
    if not sources:
        st.warning("No images found there." + (f" Refused: {refused[0]}" if refused else ""))
        st.stop()
    batch.store((sources, *_predict(sources, refused)))
if batch.get() is None:
    st.stop()
sources, results, skipped = batch.get()
st.caption(f"{batch.caption} · decided at the model's stored thresholds: {thresholds_text(predictor.card)}")
if results:  # the totals first: what the batch says, per label
    counts = pd.Series([r.label for r in results], dtype=object).value_counts()
    st.markdown(f"**{len(results)} predicted:** " + ", ".join(f"{common.md(str(k))} {v}" for k, v in counts.items()))
if skipped:
    st.warning(f"skipped {len(skipped)} file(s):\n\n" + "\n\n".join(skipped[:20]))
if not results:
    st.error("None of the files could be read as images.")
    st.stop()
table = pd.DataFrame(
    [
        {"path": r.source, "label": r.label, "score": r.score, "ms": r.time_ms}
        | ({"boxes": len(r.boxes)} if r.boxes is not None else {})
        for r in results
    ]
)
labels = st.multiselect("Labels", sorted(table["label"].unique()), default=sorted(table["label"].unique()))
low, high = st.slider("Score between", 0.0, 1.0, (0.0, 1.0), 0.01)
shown = table[table["label"].isin(labels) & table["score"].between(low, high)]
st.dataframe(shown, width="stretch")
boxed = {r.source: r for r in results if r.boxes is not None and r.source in set(shown["path"])}
if boxed:  # detection: boxes at or above a score, counted per class over the shown images
    floor = min((b["score"] for r in boxed.values() for b in r.boxes), default=0.0)
    least = st.slider("Box score at least", 0.0, 1.0, round(floor, 2), 0.01, help="boxes below it are not counted")
    boxed = {k: replace(r, boxes=[b for b in r.boxes if b["score"] >= least]) for k, r in boxed.items()}
    per_class = pd.Series([box["class"] for r in boxed.values() for box in r.boxes], dtype=object).value_counts()
    st.caption(f"boxes per class over {len(boxed)} image(s), score >= {least:.2f}")
    st.dataframe(per_class.rename_axis("class").reset_index(name="boxes"), hide_index=True, key="batch_counts")
made_by = {"model": str(batch.model.path), "model_onnx": batch.model.digest} if batch.model else {}
st.download_button(
    "Download CSV", shown.assign(**made_by).to_csv(index=False), file_name="predictions.csv", mime="text/csv"
)
st.subheader("Gallery")
st.caption(f"the first {min(24, len(shown))} of the {len(shown)} images in the table above (filter it to see others)")
columns = st.columns(6)
by_path = {r.source: r for r in results}
for k, path in enumerate(shown["path"].head(24)):
    r = boxed.get(path) or by_path[path]
    image, _ = _image(path, dict(sources)[path])
    shown_image = r.overlay(pipeline(image)) if r.mask is not None or r.boxes is not None else image
    columns[k % 6].image(shown_image, caption=f"{Path(path).name}: {r.label} {r.score:.2f}", width="stretch")
