"""The multivariate check: can a classifier tell reference images from current ones?

A gradient-boosting classifier (scikit-learn's histogram GBM, which takes NaN for "not
applicable" natively) is fitted on a random half of each side's property vectors and scores the
other half; the held-out AUC gives the drift score max(2 AUC - 1, 0), and relabelling the held-out
half at random gives its permutation p-value. Given the fitted model, the held-out labels are
exchangeable when nothing changed, so this p-value is exact at every sample size. (Cross-validated
out-of-fold scores with relabelled labels, the cheaper-looking alternative, are not: each fold's
model scores on its own scale, which widens the spread of the pooled AUC beyond what relabelling
reproduces; measured on Gaussian noise with 50 images a side, it fired 11.5 % of the time at
alpha = 0.05.) Permutation importances on the held-out half name the properties that tell the sets
apart (computed only when the check is significant: on the null they only name noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class DomainFit:
    """Held-out classifier scores (reference images first, then current), and what is needed to
    explain them."""

    scores: np.ndarray
    n_ref: int  # held-out reference images (the first n_ref scores)
    n_train: int
    names: list[str]
    _held_out: tuple = field(repr=False)  # (model, x_test, y_test)

    @property
    def n_cur(self) -> int:
        return len(self.scores) - self.n_ref

    def importances(self, seed: int = 0) -> dict[str, float]:
        """Permutation importances: held-out AUC lost when a property is shuffled, largest first."""
        from sklearn.inspection import permutation_importance
        from threadpoolctl import threadpool_limits

        model, x, y = self._held_out
        with threadpool_limits(limits=1, user_api="openmp"):  # as for the fit (see fit_domain_classifier)
            drop = permutation_importance(model, x, y, scoring="roc_auc", n_repeats=5, random_state=seed)
        return dict(sorted(((n, float(v)) for n, v in zip(self.names, drop.importances_mean)), key=lambda kv: -kv[1]))


def fit_domain_classifier(x_ref: np.ndarray, x_cur: np.ndarray, names: list[str], seed: int = 0) -> DomainFit | None:
    """Fit the domain classifier on half of each side's property matrix (rows = images, NaN
    allowed) and score the other half.

    Returns:
        The fit, or None when either side has fewer than 2 images (nothing to hold out).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits  # scikit-learn's own dependency

    if min(len(x_ref), len(x_cur)) < 2:
        return None
    rng = np.random.default_rng(seed)
    ref_order, cur_order = rng.permutation(len(x_ref)), rng.permutation(len(x_cur))
    ref_test, cur_test = ref_order[: len(x_ref) // 2], cur_order[: len(x_cur) // 2]
    ref_train, cur_train = ref_order[len(x_ref) // 2 :], cur_order[len(x_cur) // 2 :]
    x_train = np.vstack([x_ref[ref_train], x_cur[cur_train]])
    y_train = np.r_[np.zeros(len(ref_train)), np.ones(len(cur_train))]
    x_test = np.vstack([x_ref[ref_test], x_cur[cur_test]])
    # a property no training image has (the few colour images all held out) teaches nothing, and the
    # classifier refuses an all-NaN column
    known = ~np.isnan(x_train).all(axis=0)
    x_train, x_test, names = x_train[:, known], x_test[:, known], [n for n, k in zip(names, known) if k]
    y_test = np.r_[np.zeros(len(ref_test)), np.ones(len(cur_test))]
    model = HistGradientBoostingClassifier(
        max_iter=100,
        learning_rate=0.1,
        max_leaf_nodes=15,
        min_samples_leaf=max(2, min(20, len(y_train) // 20)),
        early_stopping=False,
        random_state=seed,
    )
    # One OpenMP thread: this fit is small, and on a busy machine (a server, the monitor, parallel
    # tests) the default threads spin against every other busy thread (measured by the monitor: 0.4 s
    # for a 120-image window single-threaded, 6-137 s with the default).
    with threadpool_limits(limits=1, user_api="openmp"):
        model.fit(x_train, y_train)
        scores = model.predict_proba(x_test)[:, 1]
    return DomainFit(scores, len(ref_test), len(y_train), names, (model, x_test, y_test))
