"""Classification inference: softmax scores, the decision rule (argmax, or a binary model's
threshold) and the Prediction every front door returns. Pure NumPy: serving needs no torch."""

from __future__ import annotations

import time
from collections.abc import Sequence

import numpy as np

from inspekt.card import EMBEDDING, ModelCard
from inspekt.results import share_time
from inspekt.tasks.base import DrawnPrediction, RunOutputs
from inspekt.transforms import preprocess_batch


class ClassPrediction(DrawnPrediction):
    """A classifier's prediction: ``repr`` names the runner-up classes."""

    def describe(self) -> str:
        runners = ", ".join(f"{name} {p:.1%}" for name, p in self.top(3)[1:])
        return f"then {runners}" if runners else ""


def softmax(logits: np.ndarray) -> np.ndarray:
    """Class probabilities from (N, C) logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def decide(probs: np.ndarray, classes: Sequence[str], thresholds: dict[str, float]) -> np.ndarray:
    """Predicted class indices: the most probable class, or for a binary model with a threshold
    ``{positive: t}``, the positive class whenever its probability reaches ``t``. The one rule
    used by prediction, evaluation and the INT8 accuracy check."""
    best = probs.argmax(1)
    for name, threshold in thresholds.items():
        positive = list(classes).index(name)
        best = np.where(probs[:, positive] >= threshold, positive, 1 - positive)
    return best


def predict_classify(
    card: ModelCard, images: Sequence[np.ndarray], sources: Sequence[str], run: RunOutputs, batch_size: int = 16
) -> list[ClassPrediction]:
    """Softmax scores; the label is the most probable class, or for a binary card with a threshold,
    the positive class whenever its probability reaches the threshold."""
    t0 = time.perf_counter()
    batch, _ = preprocess_batch(images, card.input)
    outputs = run(batch)
    probs = softmax(outputs[card.outputs[0]].astype(np.float64))
    embeddings = outputs.get(EMBEDDING, [None] * len(probs))
    results = []
    for source, row, best, embedding in zip(sources, probs, decide(probs, card.classes, card.thresholds), embeddings):
        scores = {name: float(p) for name, p in zip(card.classes, row)}
        best = int(best)
        results.append(
            ClassPrediction(source, "classify", card.classes[best], float(row[best]), scores, embedding=embedding)
        )
    share_time(results, t0)
    return results
