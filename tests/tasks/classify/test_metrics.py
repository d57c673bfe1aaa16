"""Classification metrics, threshold sweeps and plots: hand-checked cases and scikit-learn."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest
from sklearn import metrics as skm

from inspekt.engine import plots
from inspekt.io import load_image
from inspekt.tasks.classify import plots as classify_plots
from inspekt.tasks.classify.metrics import (
    best_f1_threshold,
    classification_metrics,
    expected_calibration_error,
    threshold_sweep,
)


def one_hot_probs(indices, n_classes, confidence):
    """Probabilities with ``confidence`` on the given class, the rest spread evenly."""
    probs = np.full((len(indices), n_classes), (1 - confidence) / (n_classes - 1))
    probs[np.arange(len(indices)), indices] = confidence
    return probs


def no_nan(value):
    json.dumps(value, allow_nan=False)  # raises on NaN / inf anywhere in the dict


def test_perfect_predictions():
    y = np.array([0, 1, 2, 0, 1, 2, 2])
    m = classification_metrics(y, one_hot_probs(y, 3, 0.9), ["a", "b", "c"])
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_precision", "roc_auc", "pr_auc"):
        assert m[key] == pytest.approx(1.0), key
    assert m["confusion"] == [[2, 0, 0], [0, 2, 0], [0, 0, 3]]
    assert m["confusion_normalized"] == [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert m["ece"] == pytest.approx(0.1)  # always right, always 0.9 sure
    assert [r["support"] for r in m["per_class"]] == [2, 2, 3] and m["n"] == 7
    no_nan(m)


def test_all_wrong_predictions():
    y = np.array([0, 1, 2, 0])
    predicted = (y + 1) % 3
    m = classification_metrics(y, one_hot_probs(predicted, 3, 0.8), ["a", "b", "c"])
    assert m["accuracy"] == 0 and m["macro_f1"] == 0 and m["balanced_accuracy"] == 0
    assert np.trace(np.array(m["confusion"])) == 0 and np.sum(m["confusion"]) == 4
    assert m["ece"] == pytest.approx(0.8)
    assert m["roc_auc"] < 0.5
    no_nan(m)


def test_imbalanced_multiclass_agrees_with_scikit_learn():
    rng = np.random.default_rng(3)
    y = rng.choice(4, size=200, p=[0.7, 0.15, 0.1, 0.05])
    probs = rng.dirichlet(np.ones(4), size=200)
    probs[np.arange(200), y] += rng.uniform(0, 1.5, 200)  # informative, not perfect
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(y, probs, ["ok", "pore", "lop", "scratch"])
    pred = probs.argmax(1)
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert (m[f"{avg}_precision"], m[f"{avg}_recall"], m[f"{avg}_f1"]) == pytest.approx((p, r, f))
    p, r, f, s = skm.precision_recall_fscore_support(y, pred, labels=range(4), zero_division=0)
    assert [row["f1"] for row in m["per_class"]] == pytest.approx(f)
    assert [row["support"] for row in m["per_class"]] == s.tolist()
    assert m["confusion"] == skm.confusion_matrix(y, pred, labels=range(4)).tolist()
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, probs, multi_class="ovr", average="macro"))
    aps = [skm.average_precision_score(y == c, probs[:, c]) for c in range(4)]
    assert m["pr_auc"] == pytest.approx(np.mean(aps))


def test_class_absent_from_truth_gives_zeros_not_warnings():
    y = np.array([0, 0, 1, 1, 0])
    pred = np.array([0, 2, 1, 1, 0])  # class c predicted once, never true
    probs = one_hot_probs(pred, 3, 0.6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = classification_metrics(y, probs, ["a", "b", "c"])
    no_nan(m)
    c = m["per_class"][2]
    assert c == {"class": "c", "precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert m["confusion_normalized"][2] == [0.0, 0.0, 0.0]
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert m["balanced_accuracy"] == pytest.approx(np.mean([2 / 3, 1.0]))  # recall of a and b only
    expected_auc = np.mean([skm.roc_auc_score(y == k, probs[:, k]) for k in (0, 1)])
    assert m["roc_auc"] == pytest.approx(expected_auc)


def test_single_class_has_no_auc():
    y = np.zeros(6, dtype=int)
    m = classification_metrics(y, one_hot_probs(np.array([0, 0, 1, 0, 0, 0]), 2, 0.7), ["ok", "pore"])
    assert m["roc_auc"] is None and m["pr_auc"] is None
    assert m["accuracy"] == pytest.approx(5 / 6)
    no_nan(m)


@pytest.mark.parametrize("classes, positive", [(["ok", "pore"], 1), (["defect", "good"], 0)])
def test_binary_auc_is_of_the_positive_class(classes, positive):
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 60)
    p_pos = np.clip(0.5 + 0.3 * (y == positive) + rng.normal(0, 0.25, 60), 0, 1)
    probs = np.zeros((60, 2))
    probs[:, positive], probs[:, 1 - positive] = p_pos, 1 - p_pos
    m = classification_metrics(y, probs, classes)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y == positive, p_pos))
    assert m["pr_auc"] == pytest.approx(skm.average_precision_score(y == positive, p_pos))


def test_binary_ece_of_a_known_case():
    # five predictions at 0.8 with 3 right (gap 0.2), two at 0.6 both right (gap 0.4)
    y = np.array([1, 1, 1, 0, 0, 1, 1])
    p_one = np.array([0.8, 0.8, 0.8, 0.8, 0.8, 0.6, 0.6])
    probs = np.stack([1 - p_one, p_one], axis=1)
    m = classification_metrics(y, probs, ["ok", "pore"])
    assert m["ece"] == pytest.approx((5 * 0.2 + 2 * 0.4) / 7)
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([False, True])) == pytest.approx(0.0)


def test_y_pred_decides_labels_but_ece_stays_top1():
    y = np.array([1, 1, 0, 0])
    probs = np.array([[0.6, 0.4], [0.3, 0.7], [0.8, 0.2], [0.65, 0.35]])
    argmax = classification_metrics(y, probs, ["ok", "pore"])
    low = classification_metrics(y, probs, ["ok", "pore"], y_pred=(probs[:, 1] >= 0.3).astype(int))
    assert argmax["accuracy"] == pytest.approx(0.75) and low["accuracy"] == pytest.approx(0.75)
    assert low["confusion"] == [[1, 1], [0, 2]] and argmax["confusion"] == [[2, 0], [1, 1]]
    assert low["ece"] == argmax["ece"]


@pytest.mark.parametrize(
    "y, probs, message",
    [
        (np.array([0, 1]), np.ones((2, 3)) / 3, "shape"),
        (np.array([], dtype=int), np.ones((0, 2)), "no samples"),
        (np.array([0, 5]), np.ones((2, 2)) / 2, "outside"),
    ],
)
def test_bad_inputs_raise(y, probs, message):
    with pytest.raises(ValueError, match=message):
        classification_metrics(y, probs, ["a", "b"])


def test_threshold_sweep_hand_case():
    sweep = threshold_sweep(np.array([True, True, False, False]), np.array([0.9, 0.6, 0.4, 0.1]), n=11)
    rows = {row["threshold"]: row for row in sweep}
    assert len(sweep) == 11 and sweep[0]["threshold"] == 0.0 and sweep[-1]["threshold"] == 1.0
    assert rows[0.0] == {
        "threshold": 0.0,
        "precision": 0.5,
        "recall": 1.0,
        "f1": pytest.approx(2 / 3),
        "fpr": 1.0,
        "tpr": 1.0,
        "predicted_positive": 4,
    }
    assert rows[0.4]["predicted_positive"] == 3  # score >= threshold is positive
    assert rows[0.6]["f1"] == 1.0 and rows[0.6]["fpr"] == 0.0
    assert rows[1.0]["precision"] == 0.0 and rows[1.0]["f1"] == 0.0 and rows[1.0]["predicted_positive"] == 0


def test_threshold_sweep_agrees_with_a_direct_count():
    rng = np.random.default_rng(1)
    truth, score = rng.random(300) < 0.3, np.round(rng.random(300), 2)  # rounding makes ties with thresholds
    for row in threshold_sweep(truth, score, n=21):
        decided = score >= row["threshold"]
        tp, fp = np.sum(decided & truth), np.sum(decided & ~truth)
        assert row["predicted_positive"] == tp + fp
        assert row["recall"] == pytest.approx(tp / truth.sum())
        assert row["fpr"] == pytest.approx(fp / (~truth).sum())
        assert row["f1"] == pytest.approx(skm.f1_score(truth, decided, zero_division=0))


def test_best_f1_threshold_takes_the_middle_of_the_widest_tie():
    sweep = threshold_sweep(np.array([True, True, False, False]), np.array([0.9, 0.6, 0.4, 0.1]))
    best = best_f1_threshold(sweep)  # F1 = 1 for thresholds 0.41 ... 0.60
    assert best["f1"] == 1.0 and best["threshold"] == pytest.approx(0.50)
    rows = [{"threshold": t / 10, "f1": f} for t, f in enumerate([0.5, 1, 0.5, 1, 1, 1, 0.2])]
    assert best_f1_threshold(rows)["threshold"] == pytest.approx(0.4)
    with pytest.raises(ValueError):
        best_f1_threshold([])


def assert_png(path):
    image = load_image(path)
    assert image.ndim == 3 and min(image.shape[:2]) > 100 and image.std() > 0  # decodes, not blank
    return image


def test_plot_history_tolerates_missing_keys_and_csv_strings(tmp_path):
    history = [
        {"epoch": str(i), "train_loss": str(1 / i), "val_accuracy": 0.5 + i / 20, "val_macro_f1": "", "lr": 0.1}
        for i in range(1, 6)
    ]
    assert_png(plots.plot_history(history, tmp_path / "deep" / "history.png"))
    with pytest.raises(ValueError, match="no train_loss"):
        plots.plot_history([{"epoch": 1, "lr": 0.1}], tmp_path / "empty.png")


@pytest.mark.slow
@pytest.mark.parametrize("n", [2, 20])
def test_plot_confusion_writes_a_png(tmp_path, n):
    matrix = np.random.default_rng(n).integers(0, 30, (n, n))
    small = assert_png(classify_plots.plot_confusion(matrix, [f"class{i}" for i in range(n)], tmp_path / "c.png"))
    normalized = matrix / matrix.sum(1, keepdims=True)
    assert_png(
        classify_plots.plot_confusion(normalized, [f"c{i}" for i in range(n)], tmp_path / "n.png", normalized=True)
    )
    assert n == 2 or small.shape[0] > 600  # the figure grows with the number of classes
    with pytest.raises(ValueError, match="does not fit"):
        classify_plots.plot_confusion(matrix, ["a"], tmp_path / "x.png")


@pytest.mark.slow
def test_plot_threshold_sweep_and_runs(tmp_path):
    sweep = threshold_sweep(np.array([True, False, True]), np.array([0.8, 0.3, 0.5]))
    assert_png(classify_plots.plot_threshold_sweep(sweep, tmp_path / "sweep.png", chosen=0.45))
    history = [{"epoch": i, "train_loss": 1 / i, "val_loss": 1.2 / i, "val_macro_f1": i / 5} for i in range(1, 5)]
    assert_png(plots.plot_runs({"exp": history, "exp2": history[:2]}, tmp_path / "runs.png"))
    with pytest.raises(ValueError):
        plots.plot_runs({}, tmp_path / "none.png")


def test_importing_metrics_plots_and_evaluate_stays_light():
    code = (
        "import sys, inspekt.tasks.classify.metrics, inspekt.tasks.classify.plots, inspekt.engine.plots, "
        "inspekt.engine.evaluator; "
        "print(sorted(m for m in ('torch', 'matplotlib', 'sklearn', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
