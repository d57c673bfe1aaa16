"""The multivariate check: can a classifier tell reference images from current ones?

A classifier is fitted on a random half of each side's property vectors and scores the other half;
the held-out AUC gives the drift score max(2 AUC - 1, 0), and relabelling the held-out half at
random gives its permutation p-value. Given the fitted model, the held-out labels are exchangeable
when nothing changed, so this p-value is exact at every sample size, whatever the classifier.
(Cross-validated out-of-fold scores with relabelled labels, the cheaper-looking alternative, are
not: each fold's model scores on its own scale, which widens the spread of the pooled AUC beyond
what relabelling reproduces; measured on Gaussian noise with 50 images a side, it fired 11.5 % of
the time at alpha = 0.05.)

The classifier is gradient boosting of depth-2 trees on quantile bins (scikit-learn's histogram
gradient boosting, which it replaced, does the same; written here in NumPy because that library's
import alone took longer than the whole check on 10,000 images). Its columns are each property, with
"not applicable" (NaN) a bin of its own, and the product of each pair of the properties' centred
quantiles, so that two properties that only move together (brightness with image size) are seen; a
split on a pair must gain 1 / PAIR_WEIGHT times a split on one property, or the many pairs fit noise
first. It trains on at most TRAIN_ROWS rows; the held-out half is always scored in full.
Permutation importances on the held-out half name the properties that tell the sets apart
(computed only when the check is significant: on the null they only name noise).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inspekt.drift import stats

BINS = 16  # quantile bins per property (plus one for "not applicable")
ROUNDS = 60  # trees at most
RATE = 0.2  # learning rate
PAIR_WEIGHT = 0.3  # gains of splits on a pair of properties count this much
TRAIN_ROWS = 2000  # training rows at most (a seeded random subset beyond)
LAMBDA = 1.0  # L2 penalty on leaf values


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

    def importances(self, seed: int = 0, repeats: int = 5) -> dict[str, float]:
        """Permutation importances: held-out AUC lost when a property is shuffled, largest first."""
        model, x, y = self._held_out
        rng = np.random.default_rng(seed)
        base = auc_of(model.scores(x), y)
        lost = {}
        for j, name in enumerate(self.names):
            drops = []
            for _ in range(repeats):
                shuffled = x.copy()
                shuffled[:, j] = x[rng.permutation(len(x)), j]
                drops.append(base - auc_of(model.scores(shuffled), y))
            lost[name] = float(np.mean(drops))
        return dict(sorted(lost.items(), key=lambda kv: -kv[1]))


def auc_of(scores: np.ndarray, is_current: np.ndarray) -> float:
    """AUC of ``scores`` for telling current (True) from reference images (ties count half; 0.5 when
    a side is empty)."""
    if is_current.all() or not is_current.any():
        return 0.5
    return float(stats.auc(stats.average_ranks(scores), ~is_current[None])[0])


class Boosted:
    """Gradient-boosted depth-2 trees on quantile bins (see the module notes), in NumPy."""

    def __init__(self, x: np.ndarray, y: np.ndarray, min_leaf: int):
        self.known = [np.sort(col[~np.isnan(col)]) for col in x.T]  # each property's training values
        expanded = self.expand(x)
        self.edges = [_edges(col[~np.isnan(col)]) for col in expanded.T]
        codes = self.codes(expanded)
        # a pair's split must gain 1 / PAIR_WEIGHT times a single property's to be taken: with dozens of
        # pairs, one of them fits noise better than the property that really moved
        weight = np.r_[np.ones(x.shape[1]), np.full(expanded.shape[1] - x.shape[1], PAIR_WEIGHT)]
        share = min(max(y.mean(), 1e-6), 1 - 1e-6)
        self.base = float(np.log(share / (1 - share)))
        self.trees: list[Tree] = []
        raw = np.full(len(y), self.base)
        for _ in range(ROUNDS):
            p = 1.0 / (1.0 + np.exp(-raw))
            tree = _grow(codes, p - y, p * (1 - p), min_leaf, weight)
            if tree is None:
                break
            self.trees.append(tree)
            raw += tree.apply(codes)

    def expand(self, x: np.ndarray) -> np.ndarray:
        """Each property as its centred quantile u - 1/2 among the training values (mid-rank for ties;
        NaN stays NaN), then the product of every pair of them: a tree splits on "large and bright"
        in one step, where two properties that only move together give a first split no gain."""
        centred = np.full(x.shape, np.nan)
        for j, (known, col) in enumerate(zip(self.known, x.T)):
            if len(known):
                left = np.searchsorted(known, col, side="left")
                right = np.searchsorted(known, col, side="right")
                centred[:, j] = np.where(np.isnan(col), np.nan, (left + right) / (2 * len(known)) - 0.5)
        i, j = np.triu_indices(x.shape[1], k=1)
        return np.hstack([centred, centred[:, i] * centred[:, j]])

    def codes(self, x: np.ndarray) -> np.ndarray:
        """(n, columns) bin numbers of expanded rows: 0..BINS-1 by the training quantiles, BINS for NaN."""
        codes = np.empty(x.shape, dtype=np.int64)
        for j, (edges, col) in enumerate(zip(self.edges, x.T)):
            codes[:, j] = np.where(np.isnan(col), BINS, np.searchsorted(edges, col, side="right"))
        return codes

    def scores(self, x: np.ndarray) -> np.ndarray:
        """The boosted log-odds that each row (of properties) is a current image."""
        codes = self.codes(self.expand(x))
        return self.base + sum((tree.apply(codes) for tree in self.trees), np.zeros(len(x)))


@dataclass
class Tree:
    """A depth-2 tree: ``code[feature] <= bin`` at the root, then each side's own split or none,
    and the four leaves' values (scaled by the learning rate)."""

    split: tuple[int, int]
    children: tuple[tuple[int, int] | None, tuple[int, int] | None]
    values: np.ndarray  # leaves: left-left, left-right, right-left, right-right

    def apply(self, codes: np.ndarray) -> np.ndarray:
        right = codes[:, self.split[0]] > self.split[1]
        second = np.zeros(len(codes), dtype=bool)
        for side, child in enumerate(self.children):
            if child is not None:
                rows = right == bool(side)
                second[rows] = codes[rows, child[0]] > child[1]
        return self.values[2 * right + second]


def _edges(values: np.ndarray) -> np.ndarray:
    """Inner bin edges at the training values' quantiles (fewer where values repeat)."""
    if not len(values):
        return np.zeros(0)
    return np.unique(np.quantile(values, np.linspace(0, 1, BINS + 1)[1:-1]))


def _best_split(
    codes: np.ndarray, g: np.ndarray, h: np.ndarray, min_leaf: int, weight: np.ndarray
) -> tuple[float, int, int] | None:
    """The (gain, feature, bin) of the best ``code <= bin`` split of these rows, each column's gains
    scaled by its ``weight``, or None."""
    n, d = codes.shape
    width = BINS + 1
    flat = (codes + np.arange(d) * width).ravel()
    sums = [np.bincount(flat, weights=np.repeat(v, d), minlength=d * width).reshape(d, width) for v in (g, h)]
    counts = np.bincount(flat, minlength=d * width).reshape(d, width)
    left_g, left_h, left_n = (np.cumsum(a, axis=1)[:, :BINS] for a in (*sums, counts))
    total_g, total_h = g.sum(), h.sum()
    right_g, right_h = total_g - left_g, total_h - left_h
    gain = left_g**2 / (left_h + LAMBDA) + right_g**2 / (right_h + LAMBDA) - total_g**2 / (total_h + LAMBDA)
    gain *= weight[:, None]
    gain[(left_n < min_leaf) | (n - left_n < min_leaf)] = -np.inf
    f, b = np.unravel_index(int(np.argmax(gain)), gain.shape)
    return (float(gain[f, b]), int(f), int(b)) if gain[f, b] > 1e-12 else None


def _grow(codes: np.ndarray, g: np.ndarray, h: np.ndarray, min_leaf: int, weight: np.ndarray) -> Tree | None:
    """One tree fitted to the gradients ``g`` and hessians ``h`` (None: no split helps)."""
    root = _best_split(codes, g, h, min_leaf, weight)
    if root is None:
        return None
    right = codes[:, root[1]] > root[2]
    children, leaf = [], np.zeros(len(codes), dtype=np.int64)
    for side in (False, True):
        rows = right == side
        found = _best_split(codes[rows], g[rows], h[rows], min_leaf, weight)
        children.append(None if found is None else found[1:])
        if found is not None:
            leaf[rows] = codes[rows, found[1]] > found[2]
    leaf += 2 * right
    g_sum, h_sum = (np.bincount(leaf, weights=v, minlength=4) for v in (g, h))
    return Tree(root[1:], (children[0], children[1]), -RATE * g_sum / (h_sum + LAMBDA))


def fit_domain_classifier(x_ref: np.ndarray, x_cur: np.ndarray, names: list[str], seed: int = 0) -> DomainFit | None:
    """Fit the domain classifier on half of each side's property matrix (rows = images, NaN
    allowed) and score the other half.

    Returns:
        The fit, or None when either side has fewer than 2 images (nothing to hold out).
    """
    if min(len(x_ref), len(x_cur)) < 2:
        return None
    rng = np.random.default_rng(seed)
    ref_order, cur_order = rng.permutation(len(x_ref)), rng.permutation(len(x_cur))
    ref_test, cur_test = ref_order[: len(x_ref) // 2], cur_order[: len(x_cur) // 2]
    ref_train, cur_train = ref_order[len(x_ref) // 2 :], cur_order[len(x_cur) // 2 :]
    x_train = np.vstack([x_ref[ref_train], x_cur[cur_train]])
    y_train = np.r_[np.zeros(len(ref_train)), np.ones(len(cur_train))]
    x_test = np.vstack([x_ref[ref_test], x_cur[cur_test]])
    # a property no training image has (the few colour images all held out) teaches nothing
    known = ~np.isnan(x_train).all(axis=0)
    x_train, x_test, names = x_train[:, known], x_test[:, known], [n for n, k in zip(names, known) if k]
    y_test = np.r_[np.zeros(len(ref_test), bool), np.ones(len(cur_test), bool)]
    if len(y_train) > TRAIN_ROWS:  # enough to learn a shift; the held-out half is scored in full
        keep = np.sort(rng.choice(len(y_train), TRAIN_ROWS, replace=False))
        x_train, y_train = x_train[keep], y_train[keep]
    model = Boosted(x_train, y_train, min_leaf=max(2, min(20, len(y_train) // 20)))
    return DomainFit(model.scores(x_test), len(ref_test), len(y_train), names, (model, x_test, y_test))
