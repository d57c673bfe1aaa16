"""Suspect class labels, by confident learning (cleanlab) on out-of-sample class probabilities.

cleanlab estimates, per pair of classes, how many images labelled one class are really the other
(the confident joint) and flags that many images of each pair, the least likely first
(``filter_by="prune_by_noise_rate"``). Every flagged image's score is 1 - p(its given label) (the
"self-confidence" label quality, inverted): 0.97 means the models gave its label a 3 % chance.

The cross-validation folds train on class-balanced batches (a rare class is learnt in a few epochs),
which is training under a uniform class prior: such a model calls a plain image a rare defect far too
often. Its probabilities are moved back to the labels' class mix before cleanlab reads them
(``to_label_prior``; ``benchmarks/label_issues.py`` measures what it changes).

On small datasets cleanlab's count of wrong labels per pair of classes rounds down (one wrong image
in 30 may be estimated as none), so an image is also flagged when the models give its label under
``OBVIOUS`` while another class has the majority: no estimate is needed to doubt such a label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspekt.curate.issues import DataIssue
from inspekt.data.dataset import Dataset
from inspekt.results import Prediction

OBVIOUS = 0.05  # p(given label) below which a label is doubted whatever cleanlab's estimate


@dataclass(frozen=True)
class LabelRanking:
    """Every judged image's label quality, the flagged ones first.

    Attributes:
        paths: the judged images (labelled, with a prediction), worst label quality first.
        quality: p(given label) of each (flagged first, then ascending).
        flagged: whether each is flagged as a label issue (by cleanlab, or as obvious).
        given: each image's label.
        suggested: the most probable class of each.
        suggested_p: its probability.
        given_p: the probability of the given label (as ``quality``).
        probs: the (N, K) out-of-sample probabilities (prior-corrected), in the dataset's class order.
    """

    paths: list[str]
    quality: np.ndarray
    flagged: np.ndarray
    given: list[str]
    suggested: list[str]
    suggested_p: np.ndarray
    given_p: np.ndarray
    probs: np.ndarray


def probabilities(predictions: Sequence[Prediction], classes: Sequence[str]) -> np.ndarray:
    """(N, K) class probabilities in the dataset's class order; a class a fold model never saw gets 0
    and each row is renormalised."""
    probs = np.array([[(p.scores or {}).get(c, 0.0) for c in classes] for p in predictions], dtype=np.float64)
    totals = probs.sum(1, keepdims=True)
    return np.where(totals > 0, probs / np.maximum(totals, 1e-12), 1.0 / len(classes))


def to_label_prior(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Probabilities of a model trained under a uniform class prior (balanced batches), under the
    labels' class mix instead: each class's probability times its share of the labels, renormalised
    (Bayes' rule: the posterior scales with the prior)."""
    share = np.bincount(labels, minlength=probs.shape[1]) / len(labels)
    moved = probs * share
    return moved / np.maximum(moved.sum(1, keepdims=True), 1e-12)


def rank_labels(ds: Dataset, predictions: dict[str, Prediction], *, balanced: bool = False) -> LabelRanking:
    """cleanlab's verdict on every labelled image that has an out-of-sample prediction.

    Args:
        ds: the dataset (labels and class names).
        predictions: image path (as in ``ds``) -> out-of-sample prediction with per-class ``scores``.
        balanced: the models were trained on class-balanced batches, i.e. under a uniform class prior:
            their probabilities are moved back to the labels' own class mix first (``to_label_prior``).

    Returns:
        The ranking (empty when fewer than two classes are labelled).
    """
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    classes = list(ds.classes)
    judged = [s for s in ds.samples if s.label in classes and str(s.path) in predictions]
    if len({s.label for s in judged}) < 2:
        return LabelRanking([], np.zeros(0), np.zeros(0, bool), [], [], np.zeros(0), np.zeros(0), np.zeros((0, 0)))
    labels = np.array([classes.index(s.label) for s in judged])
    probs = probabilities([predictions[str(s.path)] for s in judged], classes)
    if balanced:
        probs = to_label_prior(probs, labels)
    given_p = probs[np.arange(len(labels)), labels]
    obvious = (given_p < OBVIOUS) & (probs.max(1) >= 0.5)
    flagged = find_label_issues(labels, probs, filter_by="prune_by_noise_rate", n_jobs=1) | obvious
    quality = get_label_quality_scores(labels, probs, method="self_confidence")
    order = np.lexsort((quality, ~flagged))  # flagged first, then the least likely label first
    return LabelRanking(
        [str(judged[i].path) for i in order],
        quality[order],
        flagged[order],
        [judged[i].label for i in order],
        [classes[int(probs[i].argmax())] for i in order],
        probs[order].max(1),
        given_p[order],
        probs[order],
    )


def label_issues(ranking: LabelRanking, splits: dict[str, str | None]) -> list[DataIssue]:
    """The flagged images of a ranking as issues (rank 0: ranked later with the other kinds)."""
    issues = []
    rows = zip(ranking.paths, ranking.quality, ranking.flagged, ranking.given, ranking.suggested)
    for n, (path, quality, flagged, given, suggested) in enumerate(rows):
        if not flagged:
            break
        p_given, p_top = ranking.given_p[n], ranking.suggested_p[n]
        detail = f"labelled {given}: out-of-sample p({given}) {p_given:.1%}, p({suggested}) {p_top:.1%}"
        issues.append(DataIssue(0, path, splits.get(path), "label", float(1 - quality), given, suggested, detail))
    return issues
