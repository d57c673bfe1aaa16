"""The multivariate check: can a classifier tell reference images from current ones?

A gradient-boosting classifier (scikit-learn's histogram GBM, which takes NaN for "not
applicable" natively) is cross-validated on the property vectors; its out-of-fold scores give the
AUC (drift score = max(2 AUC - 1, 0)), and the same scores, relabelled at random, give the
permutation p-value of that AUC. Relabelling the out-of-fold scores instead of refitting the
classifier for every permutation keeps the check to seconds; it is conservative, because held-out
scores of a classifier fitted on the null are, if anything, anti-correlated with held-out labels.
Permutation importances on the held-out folds name the properties that tell the sets apart
(computed only when the check is significant: on the null they only name noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DomainFit:
    """Out-of-fold classifier scores (pooled order: reference then current), and what is needed
    to explain them."""

    scores: np.ndarray
    folds: int
    names: list[str]
    _held_out: list = field(repr=False)  # (model, x_test, y_test) per fold

    def importances(self, seed: int = 0) -> dict[str, float]:
        """Permutation importances: held-out AUC lost when a property is shuffled, averaged over
        folds, largest first."""
        from sklearn.inspection import permutation_importance
        from threadpoolctl import threadpool_limits

        total = np.zeros(len(self.names))
        with threadpool_limits(limits=1, user_api="openmp"):  # as for the fits (see fit_domain_classifier)
            for k, (model, x, y) in enumerate(self._held_out):
                drop = permutation_importance(model, x, y, scoring="roc_auc", n_repeats=3, random_state=seed + k)
                total += drop.importances_mean / self.folds
        return dict(sorted(((n, float(v)) for n, v in zip(self.names, total)), key=lambda kv: -kv[1]))


def fit_domain_classifier(x_ref: np.ndarray, x_cur: np.ndarray, names: list[str], seed: int = 0,
                          folds: int = 5) -> DomainFit | None:
    """Cross-validated domain classifier on property matrices (rows = images, NaN allowed).

    Returns:
        The fit, or None when either side has fewer than 2 images (nothing to cross-validate).
    """
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    folds = min(folds, len(x_ref), len(x_cur))
    if folds < 2:
        return None
    x = np.vstack([x_ref, x_cur])
    y = np.r_[np.zeros(len(x_ref)), np.ones(len(x_cur))]
    scores = np.zeros(len(y))
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    # One OpenMP thread: these fits are small, and on a busy machine (a server, the monitor, parallel
    # tests) the default threads spin against every other busy thread (measured by the monitor: 0.4 s
    # for a 120-image window single-threaded, 6-137 s with the default).
    with threadpool_limits(limits=1, user_api="openmp"):
        held_out = _cross_validate(x, y, splitter, scores, seed)
    return DomainFit(scores, folds, names, held_out)


def _cross_validate(x: np.ndarray, y: np.ndarray, splitter, scores: np.ndarray, seed: int) -> list:
    """Fit one classifier per fold, writing its held-out scores into ``scores``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    held_out = []
    for k, (train, test) in enumerate(splitter.split(x, y)):
        model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
                                               min_samples_leaf=max(2, min(20, len(train) // 20)),
                                               early_stopping=False, random_state=seed + k)
        model.fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
        held_out.append((model, x[test], y[test]))
    return held_out
