"""Evaluate: a labelled dataset -> the task's metrics, confusion matrix, ROC / PR curves, and the
errors with their explanations (Grad-CAM; segmentation: the worst overlays)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from inspekt.app import common
from inspekt.errors import InspektError
from inspekt.io import load_image

GALLERY = 12
root = common.workspace()
predictor, model_path = common.model_sidebar(root)
st.title("Evaluate")
data = st.text_input("Labelled dataset (folder or CSV)", value=str(root / "data" / "surfaces"))
split = st.selectbox("Split", ["all", "test", "val", "train"], help="'all' uses every image of the dataset")
if predictor is None:
    st.info("Choose a model in the sidebar.")
    st.stop()
if st.button("Evaluate", type="primary"):
    from inspekt.evaluation import evaluate

    status = st.empty()
    done = [0]

    def advance(n: int = 1) -> None:
        done[0] += n
        status.caption(f"evaluating ... {done[0]} images")

    try:
        st.session_state["evaluation"] = evaluate(
            model_path, data, split=None if split == "all" else split, progress=advance
        )
    except InspektError as exc:
        st.error(str(exc))
        st.stop()
    finally:
        status.empty()
result = st.session_state.get("evaluation")
if result is None or result.bundle != str(model_path):
    st.stop()

metrics = result.metrics
if predictor.card.task == "segment":
    keys = ["defect_iou", "dice", "per_image_iou", "pixel_precision", "pixel_recall", "image_auroc", "image_f1"]
elif predictor.card.task == "anomaly":
    keys = ["image_auroc", "image_aupr", "f1", "precision", "recall", "pixel_auroc", "aupro"]
else:
    keys = ["accuracy", "macro_f1", "balanced_accuracy", "roc_auc", "pr_auc", "ece"]
cells = st.columns(len(keys))
for cell, key in zip(cells, keys):
    value = metrics.get(key)
    cell.metric(key, "-" if value is None else f"{value:.3f}")
if result.skipped:
    st.warning(
        f"skipped {len(result.skipped)} file(s): " + "; ".join(f"{s.path}: {s.reason}" for s in result.skipped[:5])
    )

if predictor.card.task == "segment":
    st.subheader("Worst images (prediction filled, truth outlined in green)")
    from inspekt.data import open_dataset
    from inspekt.seg_evaluation import write_worst_overlays

    with tempfile.TemporaryDirectory() as tmp:
        paths = write_worst_overlays(result, predictor, open_dataset(data), tmp, limit=GALLERY)
        columns = st.columns(4)
        for k, path in enumerate(paths):
            columns[k % 4].image(load_image(path), caption=Path(path).name, width="stretch")
    st.stop()

if predictor.card.task == "anomaly":
    from inspekt.anomaly_evaluation import write_plots

    st.subheader("Scores, and the worst false positives / negatives (input | anomaly map | reconstruction)")
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_plots(result, predictor, tmp, limit=GALLERY // 2)
        st.image(load_image(paths[0]), caption="normalised scores of normal vs anomalous images", width=520)
        for path in paths[1:]:
            st.image(load_image(path), caption=Path(path).name, width="stretch")
    st.stop()

classes = list(result.classes)
st.subheader("Confusion matrix (rows: truth, columns: prediction)")
st.dataframe(pd.DataFrame(metrics["confusion"], index=classes, columns=classes), width="stretch")
from sklearn.metrics import precision_recall_curve, roc_curve  # noqa: E402  (classifiers only: after the st.stop()s)

target = st.selectbox("Curves for class", classes, index=classes.index(result.positive) if result.positive else 0)
k = classes.index(target)
truth = (np.asarray(result.y_true) == k).astype(int)
if 0 < truth.sum() < len(truth):
    fpr, tpr, _ = roc_curve(truth, result.probs[:, k])
    precision, recall, _ = precision_recall_curve(truth, result.probs[:, k])
    left, right = st.columns(2)
    left.caption("ROC")
    left.line_chart(
        pd.DataFrame({"false positive rate": fpr, "true positive rate": tpr}).set_index("false positive rate")
    )
    right.caption("Precision-recall")
    right.line_chart(
        pd.DataFrame({"recall": recall, "precision": precision}).drop_duplicates("recall").set_index("recall")
    )
else:
    st.caption(f"no ROC / PR curve for {target}: the split has only one kind of image for it")

errors = [i for i in range(len(result.paths)) if result.y_true[i] != result.y_pred[i]]
st.subheader(f"Errors ({len(errors)}), with Grad-CAM for the predicted class")
explainer = common.load_explainer(str(model_path), common.stamp(model_path), "gradcam")
columns = st.columns(4)
for n, i in enumerate(errors[:GALLERY]):
    image = load_image(result.paths[i], mode="keep")
    overlay = explainer.explain(image, source=result.paths[i]).overlay
    columns[n % 4].image(
        overlay,
        caption=f"{Path(result.paths[i]).name}: true {classes[result.y_true[i]]}, "
        f"predicted {classes[result.y_pred[i]]}",
        width="stretch",
    )
