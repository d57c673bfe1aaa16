"""Two-sample statistics and their permutation p-values.

Every test here is a permutation test over images: the reference and current images are pooled,
relabelled at random ``B`` times (the same relabellings for every check, rows of a boolean
matrix), and ``p = (1 + #{T_b >= T_obs}) / (1 + B)`` — valid at any sample size, for any
statistic, ties and all. Effect sizes are reported beside the p-values, because with thousands
of images a negligible difference is "significant".
"""

from __future__ import annotations

import numpy as np

_BLOCK = 200  # permutations evaluated per block (bounds memory on large samples)


def relabellings(n_ref: int, n_cur: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, n_ref + n_cur) bool: each row marks a random n_ref of the pooled images as "reference".

    Each row takes the images with the n_ref smallest of N uniform random keys: a uniformly random
    subset, like shuffling a row, at a third of the cost on large samples (one partition instead of
    a per-element shuffle). A row whose keys tie at the cut (about N^2 / 2^53, so practically never)
    is drawn again by shuffling, so every row marks exactly n_ref.
    """
    keys = rng.random((count, n_ref + n_cur))
    if n_ref == 0:
        return np.zeros(keys.shape, dtype=bool)
    cut = np.partition(keys, n_ref - 1, axis=1)[:, n_ref - 1 : n_ref]
    labels = keys <= cut
    for row in np.flatnonzero(np.count_nonzero(labels, axis=1) != n_ref):
        labels[row] = rng.permutation(np.arange(n_ref + n_cur) < n_ref)
    return labels


def observed_labels(n_ref: int, n_cur: int) -> np.ndarray:
    """(1, N) bool: the real assignment (reference first, as pooled)."""
    return np.r_[np.ones(n_ref, bool), np.zeros(n_cur, bool)][None, :]


def permutation_p(statistic, data, perms: np.ndarray) -> tuple[float, float, np.ndarray]:
    """``(T_obs, p, statistics)`` for ``statistic(data, labels (B, N) bool) -> (B,)`` over the
    relabellings; ``statistics`` holds T_obs followed by the B relabelled ones (for ``min_p_adjusted``)."""
    n_ref = int(perms[0].sum()) if len(perms) else 0
    observed = float(statistic(data, observed_labels(n_ref, perms.shape[1] - n_ref))[0])
    null = np.concatenate([statistic(data, perms[i : i + _BLOCK]) for i in range(0, len(perms), _BLOCK)])
    return observed, _upper_p(null, np.array([observed]))[0], np.r_[observed, null]


def _count_at_least(pool: np.ndarray, values: np.ndarray) -> np.ndarray:
    """For each value v: #{pool >= v}, ties within a relative 1e-12 counted as reached (a statistic
    recomputed under another labelling may differ from the observed one in its last bits)."""
    return len(pool) - np.searchsorted(np.sort(pool), values - 1e-12 * np.maximum(1.0, np.abs(values)), side="left")


def _share_at_least(values: np.ndarray) -> np.ndarray:
    """For each value: the share of ``values`` at least as large (itself included)."""
    return _count_at_least(values, values) / len(values)


def _upper_p(null: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(1 + #{null >= v}) / (1 + B) for each v."""
    return (1 + _count_at_least(null, values)) / (1 + len(null))


def ks_na(values: np.ndarray, is_ref: np.ndarray) -> np.ndarray:
    """Per row of ``is_ref``: max(KS statistic of the non-NaN values, |difference in NaN share|).

    NaN means "not applicable" (a grey image's colour); a change in how many images a property
    applies to (grey -> colour) is drift too.
    """
    n_ref_all = np.count_nonzero(is_ref, axis=1)
    n_cur_all = is_ref.shape[1] - n_ref_all
    valid = np.flatnonzero(~np.isnan(values))
    order = valid[np.argsort(values[valid], kind="stable")]
    sorted_values = values[order]
    k = len(order)
    # int32 running counts (the rows are long: half the memory traffic of int64), kept only where
    # a tie group ends, since the ECDFs are compared after each tie group
    cum_ref = np.cumsum(is_ref[:, order], axis=1, dtype=np.int32 if k < 2**31 else np.int64)
    n_ref = cum_ref[:, -1].astype(np.int64) if k else np.zeros(len(is_ref), np.int64)
    n_cur = k - n_ref
    na_gap = np.abs((n_ref_all - n_ref) / np.maximum(n_ref_all, 1) - (n_cur_all - n_cur) / np.maximum(n_cur_all, 1))
    if k == 0:
        return na_gap
    ends = np.r_[sorted_values[1:] != sorted_values[:-1], True]
    seen = np.arange(1, k + 1)[ends]
    if not ends.all():
        cum_ref = cum_ref[:, ends]
    # KS = max |cum_ref / n_ref - cum_cur / n_cur| = max |cum_ref * k - seen * n_ref| / (n_ref * n_cur)
    # (cum_cur = seen - cum_ref): exact in integers, two passes fewer than the float form
    wide = np.int64 if k * k >= 2**31 else np.int32
    scaled = cum_ref.astype(wide, copy=False) * wide(k)
    same_n = (n_ref == n_ref[0]).all()  # always, unless NaNs fall unevenly
    scaled -= (seen * n_ref[0] if same_n else np.multiply.outer(n_ref, seen)).astype(wide)
    product = n_ref * n_cur
    ks = np.maximum(scaled.max(axis=1), -scaled.min(axis=1)) / np.maximum(product, 1)
    return np.maximum(np.where(product > 0, ks, 0.0), na_gap)


def normalised_wasserstein(ref: np.ndarray, cur: np.ndarray) -> float:
    """Wasserstein-1 distance divided by the reference's standard deviation (the pooled one when
    the reference is constant): how far the distribution moved, in reference spreads."""
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if not len(ref) or not len(cur):
        return 0.0
    # the reference's spread; the pooled one when the reference is constant; never below a relative
    # 1e-6 of the values, so floating-point noise in a constant property is not an effect
    scale = max(ref.std() or np.concatenate([ref, cur]).std(), 1e-6 * max(abs(ref.mean()), 1.0))
    return wasserstein(ref, cur) / scale


def wasserstein(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 distance between two samples: the area between their ECDFs."""
    points, gap = _ecdf_gap(a, b)
    return float(gap[:-1] @ np.diff(points))


def _ecdf_gap(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The pooled values, sorted, and |ECDF_a - ECDF_b| at each of them (both samples non-empty)."""
    a, b = np.sort(a), np.sort(b)
    points = np.sort(np.concatenate([a, b]))
    gap = np.searchsorted(a, points, side="right") / len(a) - np.searchsorted(b, points, side="right") / len(b)
    return points, np.abs(gap)


def psi(ref: np.ndarray, cur: np.ndarray, bins: int = 10, eps: float = 1e-4) -> float:
    """Population stability index over the reference's deciles (shares floored at ``eps``)."""
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if not len(ref) or not len(cur):
        return 0.0
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1))[1:-1])
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) / len(ref)
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) / len(cur)
    r, c = np.maximum(r, eps), np.maximum(c, eps)
    return float(((c - r) * np.log(c / r)).sum())


def ks_p_value(ref: np.ndarray, cur: np.ndarray) -> float | None:
    """The classic two-sample KS p-value of the non-NaN values, for reference: Kolmogorov's limiting
    distribution at sqrt(m n / (m + n)) D with Stephens' small-sample correction (a few per cent
    from the exact p-value at a few dozen images, closer beyond)."""
    ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]
    if not len(ref) or not len(cur):
        return None
    gap = _ecdf_gap(ref, cur)[1].max()
    root = np.sqrt(len(ref) * len(cur) / (len(ref) + len(cur)))
    lam = (root + 0.12 + 0.11 / root) * gap
    if lam < 0.2:  # the series converges slowly here, and its value is 1 to many digits
        return 1.0
    k = np.arange(1, 101)
    return float(np.clip(2 * np.sum((-1.0) ** (k - 1) * np.exp(-2 * (k * lam) ** 2)), 0.0, 1.0))


def kl_divergence(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """KL(p || q) in nats, with add-one smoothing so empty bins do not give infinity."""
    p = (p_counts + 1.0) / (p_counts.sum() + len(p_counts))
    q = (q_counts + 1.0) / (q_counts.sum() + len(q_counts))
    return float((p * np.log(p / q)).sum())


def js_distance(p_counts: np.ndarray, q_counts: np.ndarray) -> np.ndarray:
    """Jensen-Shannon distance (base 2, 0 to 1) between count histograms along the last axis."""
    p = p_counts / np.maximum(p_counts.sum(axis=-1, keepdims=True), 1e-300)
    q = q_counts / np.maximum(q_counts.sum(axis=-1, keepdims=True), 1e-300)
    m = (p + q) / 2

    def kl(a: np.ndarray) -> np.ndarray:
        return (a * np.log2(np.divide(a, m, out=np.ones_like(a), where=a > 0))).sum(axis=-1)

    return np.sqrt(np.maximum((kl(p) + kl(q)) / 2, 0.0))


def histogram_js(histograms: np.ndarray, is_ref: np.ndarray) -> np.ndarray:
    """Per row of ``is_ref``: JS distance between the summed per-image histograms (N, bins) of the
    images marked reference and the rest."""
    ref = is_ref.astype(np.float64) @ histograms
    return js_distance(ref, histograms.sum(axis=0) - ref)


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks of ``values``, ties given their average rank (as ``scipy.stats.rankdata``)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, len(values)])
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(starts + (counts + 1) / 2, counts)
    return ranks


def auc(ranks: np.ndarray, is_ref: np.ndarray) -> np.ndarray:
    """Per row: AUC of "current" vs "reference" from the pooled scores' ranks (ties averaged)."""
    n = is_ref.shape[1]
    n_ref = is_ref.sum(axis=1)
    n_cur = n - n_ref
    rank_sum_cur = (~is_ref).astype(np.float64) @ ranks
    return (rank_sum_cur - n_cur * (n_cur + 1) / 2) / (n_ref * n_cur)


def chi_square(codes_onehot: np.ndarray, is_ref: np.ndarray) -> np.ndarray:
    """Per row: Pearson chi-square of the 2 x K table (reference / current x category)."""
    ref = is_ref.astype(np.float64) @ codes_onehot
    total = codes_onehot.sum(axis=0)
    cur = total - ref
    n = codes_onehot.shape[0]
    n_ref = ref.sum(axis=1, keepdims=True)
    expected_ref = n_ref * total / n
    expected_cur = (n - n_ref) * total / n
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (ref - expected_ref) ** 2 / expected_ref + (cur - expected_cur) ** 2 / expected_cur
    return np.nan_to_num(terms).sum(axis=1)


def mmd2(kernel: np.ndarray, is_ref: np.ndarray) -> np.ndarray:
    """Per row: the (biased) squared maximum mean discrepancy for the given kernel matrix."""
    n_ref = is_ref.sum(axis=1, keepdims=True)
    weights = np.where(is_ref, 1.0 / n_ref, -1.0 / (is_ref.shape[1] - n_ref))
    return np.einsum("bi,ij,bj->b", weights, kernel, weights)


def min_p_adjusted(statistics: list[np.ndarray]) -> list[float]:
    """Westfall-Young single-step min-p adjustment of checks that share the same relabellings.

    ``statistics[j]`` holds check j's statistic for the real labelling (first) and each of the B
    relabellings. All B + 1 labellings are treated alike: each gives every check a p-value within
    that check's B + 1 statistics, the smallest over the checks is "the best-looking check" of that
    labelling, and a check's adjusted p-value is the share of labellings whose minimum is at least as
    extreme as the check's own p-value. Under "no drift" the real labelling is just one of them, so
    the chance of any false alarm in the family is at most alpha whatever the dependence between the
    checks, where Benjamini-Hochberg relies on positive dependence.
    """
    if not statistics:
        return []
    p = np.array([_share_at_least(values) for values in statistics])  # p[j, k]: check j under labelling k
    smallest = p.min(axis=0)
    own = p[:, 0]
    return [float((smallest <= value * (1 + 1e-12)).mean()) for value in own]
