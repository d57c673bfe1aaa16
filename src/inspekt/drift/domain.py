"""The multivariate check: can a classifier tell reference images from current ones?

A gradient-boosting classifier (scikit-learn's histogram GBM, which takes NaN for "not
applicable" natively) is cross-validated on the property vectors; its out-of-fold scores give the
AUC (drift score = max(2 AUC - 1, 0)), and the same scores, relabelled at random, give the
permutation p-value of that AUC. Relabelling the out-of-fold scores instead of refitting the
classifier for every permutation keeps the check to seconds; it is conservative, because held-out
scores of a classifier fitted on the null are, if anything, anti-correlated with held-out labels.
Permutation importances on the held-out folds name the properties that tell the sets apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class DomainFit:
    """Out-of-fold classifier scores (pooled order: reference then current) and importances."""

    scores: np.ndarray
    importances: dict[str, float]
    folds: int


def fit_domain_classifier(x_ref: np.ndarray, x_cur: np.ndarray, names: list[str], seed: int = 0,
                          folds: int = 5) -> DomainFit | None:
    """Cross-validated domain classifier on property matrices (rows = images, NaN allowed).

    Returns:
        The fit, or None when either side has fewer than 2 images (nothing to cross-validate).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import StratifiedKFold

    folds = min(folds, len(x_ref), len(x_cur))
    if folds < 2:
        return None
    x = np.vstack([x_ref, x_cur])
    y = np.r_[np.zeros(len(x_ref)), np.ones(len(x_cur))]
    scores = np.zeros(len(y))
    importances = np.zeros(x.shape[1])
    splitter = StratifiedKFold(folds, shuffle=True, random_state=seed)
    for k, (train, test) in enumerate(splitter.split(x, y)):
        model = HistGradientBoostingClassifier(max_iter=100, learning_rate=0.1, max_leaf_nodes=15,
                                               min_samples_leaf=max(2, min(20, len(train) // 20)),
                                               early_stopping=False, random_state=seed + k)
        model.fit(x[train], y[train])
        scores[test] = model.predict_proba(x[test])[:, 1]
        drop = permutation_importance(model, x[test], y[test], scoring="roc_auc", n_repeats=3,
                                      random_state=seed + k)
        importances += drop.importances_mean / folds
    return DomainFit(scores, {n: float(v) for n, v in zip(names, importances)}, folds)
