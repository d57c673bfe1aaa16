"""What more than one task uses: ratio and confusion counts of the metrics, the class weights of
the losses, the parsing of a threshold choice (``eval --set-threshold``) and the advice when the stored
threshold is far from the best one, and the built-in networks' default stem."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from inspekt.errors import ConfigError


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Element-wise num / den with 0 where den is 0."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den != 0)


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Confusion matrix of counts, rows = true class, columns = predicted class."""
    flat = np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes)


STRIDED_STEM_FROM = 128  # imgsz from which the built-in CNNs (tiny_cnn, tiny_unet) stride their first convolution


def strided_stem(imgsz: int, **with_it: Any) -> dict[str, Any]:
    """The ``model_params`` of classify's and segment's built-in networks at ``imgsz`` unless given: a
    strided first convolution from ``STRIDED_STEM_FROM`` px (about 4x cheaper per image), and the task's
    ``with_it`` parameters measured at those sizes. Measured: benchmarks/classify_magnetic_tile.py
    --defaults (30 epochs, 128 px) trained in 109 s instead of 411 s, test accuracy 0.795 vs 0.616; at
    64 px (the demo, 20 epochs) it lost 4 points of validation accuracy (0.917 vs 0.958), so smaller
    inputs keep every pixel and the plain network."""
    return {"stem_stride": 2, **with_it} if imgsz >= STRIDED_STEM_FROM else {}


BEST_F1 = "best-f1"


def inspection_rates(defective: np.ndarray, rejected: np.ndarray) -> dict:
    """What an inspection line asks of a model, at its decision threshold: the escape rate (defective
    parts passed as OK, of all defective ones) and the false-reject rate (OK parts rejected, of all OK
    ones); None where there is no such part.

    Args:
        defective: (N,) whether each part really is defective.
        rejected: (N,) whether the model rejected it (any defect verdict).
    """
    defective, rejected = np.asarray(defective, dtype=bool), np.asarray(rejected, dtype=bool)
    escapes, false_rejects = int((defective & ~rejected).sum()), int((~defective & rejected).sum())
    n_defective, n_ok = int(defective.sum()), int((~defective).sum())
    return {
        "escape_rate": escapes / n_defective if n_defective else None,
        "false_reject_rate": false_rejects / n_ok if n_ok else None,
        "escapes": escapes,
        "false_rejects": false_rejects,
    }


ADVISE_FROM = 0.1  # eval advises another threshold when it would raise F1 on the evaluated images by this much


def threshold_note(
    now: Mapping[str, Any], best: Mapping[str, Any], value: float, decision: str = "the stored threshold"
) -> str | None:
    """Advice when the stored decision threshold does much worse on the evaluated images than the
    best-F1 one (``--set-threshold best-f1``), or None.

    An anomaly model's threshold is calibrated on normal images alone, so it cannot know where the
    defects score: on a hard set it may pass most of them as normal, which the F1 row shows but does
    not explain.

    Args:
        now, best: ``f1``, ``escape_rate`` and ``false_reject_rate`` (either rate may be None) at the
            stored threshold and at the best-F1 one.
        value: the best-F1 threshold.
        decision: how the model decides now (a binary classifier without a stored threshold: argmax).
    """
    if best["f1"] - now["f1"] < ADVISE_FROM:
        return None

    def rates(m: Mapping[str, Any]) -> str:
        named = (("of the defects pass", "escape_rate"), ("of the OK images rejected", "false_reject_rate"))
        shown = [f"{m[key]:.0%} {name}" for name, key in named if m.get(key) is not None]
        return f" ({', '.join(shown)})" if shown else ""

    return (
        f"at {decision} F1 is {now['f1']:.2f}{rates(now)}; on these images a threshold of {value:g} gives "
        f"F1 {best['f1']:.2f}{rates(best)}. `inspekt eval --set-threshold best-f1` stores it: choose it on labelled "
        "images you do not report on, or the scores you report flatter it"
    )


INSPECTION_ROWS = (
    ("escape rate (defects passed as OK)", "escape_rate"),
    ("false-reject rate (OK parts rejected)", "false_reject_rate"),
)


def parse_threshold_choice(choice: str | float) -> str | float:
    """``"best-f1"`` or a probability in [0, 1] (numbers may come as text, e.g. from the CLI).

    Args:
        choice: what the user asked for.

    Returns:
        ``BEST_F1`` or the probability as a float.

    Raises:
        ConfigError: anything else.
    """
    if isinstance(choice, str) and choice.strip().lower() == BEST_F1:
        return BEST_F1
    try:
        value = float(choice)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 <= value <= 1:
        raise ConfigError(f"threshold {choice!r} is not {BEST_F1} or a probability in [0, 1] (e.g. 0.35)")
    return value


def class_weights(
    counts: np.ndarray, classes: Sequence[str], spec: str | Mapping[str, float], *, power: float = 1.0
) -> np.ndarray | None:
    """Per-class loss weights.

    Args:
        counts: training examples per class (images for classification, pixels for segmentation).
        classes: class names (index order).
        spec: ``"none"``, ``"auto"`` (inverse frequency to the ``power``, mean 1 over the classes) or
            ``{class: weight}`` (classes not named get 1).
        power: ``auto`` weights are ``(1 / frequency) ** power``; segmentation uses 0.5, because a
            defect covering 0.1 % of the pixels would otherwise weigh 1000 times the background.

    Returns:
        A float32 array of one weight per class, or None for ``"none"``.

    Raises:
        ConfigError: an unknown class name, a weight <= 0, or an unknown spec.
    """
    if spec == "none":
        return None
    if spec == "auto":
        counts = np.asarray(counts, dtype=np.float64)
        weights = np.where(counts > 0, (counts.sum() / (len(classes) * np.maximum(counts, 1))) ** power, 0.0)
        return (weights / weights[counts > 0].mean()).astype(np.float32)
    if isinstance(spec, Mapping):
        unknown = sorted(set(spec) - set(classes))
        if unknown:
            raise ConfigError(f"class_weights names unknown class(es) {unknown}; the classes are {list(classes)}")
        bad = {k: v for k, v in spec.items() if not isinstance(v, (int, float)) or v <= 0}
        if bad:
            raise ConfigError(f"class_weights values must be numbers > 0, got {bad}")
        return np.array([float(spec.get(c, 1.0)) for c in classes], dtype=np.float32)
    raise ConfigError(f"class_weights={spec!r}: use none, auto or a mapping {{class: weight}}")
