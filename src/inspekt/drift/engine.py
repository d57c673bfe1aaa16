"""The drift engine: two profiles in, one ``DriftResult`` (numbers only) out.

Every check gives a statistic, a permutation p-value (``stats``) and an effect size. The checks
on the images share one set of relabellings, and their p-values are adjusted together by the
Westfall-Young min-p method, which keeps the chance of any false alarm at ``alpha`` when nothing
changed, whatever the correlation between properties; the domain classifier (relabelled over its
held-out half) and the checks on the model's outputs (its own sample of each side) form families of
their own, and the families split ``alpha`` (Bonferroni).
A check counts as drifted only when its adjusted p-value is below ``alpha`` AND its effect reaches
the check's minimum, so a large sample does not turn a negligible difference into an alarm.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from inspekt.drift import stats
from inspekt.drift.domain import DomainFit, fit_domain_classifier
from inspekt.drift.types import MAX_PERMUTATIONS, Check, DriftConfig, DriftResult
from inspekt.errors import InspektError
from inspekt.profiling.profile import Profile
from inspekt.profiling.properties import CHANNELS, PROPERTIES

FEW_IMAGES = 30  # below this many images a side, a large effect that is not significant is inconclusive


def compare_profiles(reference: Profile, current: Profile, config: DriftConfig | None = None) -> DriftResult:
    """Compare two profiles (``check_drift`` does this after profiling the sources).

    Raises:
        InspektError: a side has fewer than 2 readable images, or the profiles were made at
            different working resolutions.
    """
    config = config or DriftConfig()
    for side, profile in (("reference", reference), ("current", current)):
        if len(profile) < 2:
            raise InspektError(
                f"the {side} set has {len(profile)} readable image(s); drift needs at least 2 "
                f"per side ({len(profile.skipped)} skipped)"
            )
    if reference.min_side != current.min_side:
        raise InspektError(
            f"the profiles were made at different working resolutions (min_side "
            f"{reference.min_side} vs {current.min_side}); profile both with the same min_side "
            "(the CLI always uses 64; in Python, profile_images(files, min_side=...))"
        )
    rng = np.random.default_rng(config.seed)
    ref_idx, cur_idx, notes = _subsets(len(reference), len(current), config.max_images, rng)
    perms = stats.relabellings(len(ref_idx), len(cur_idx), config.permutations, rng)
    checks: list[Check] = []
    if "properties" in config.checks:
        checks += _property_checks(reference, current, ref_idx, cur_idx, perms, config, notes)
    if "pixels" in config.checks:
        checks += _pixel_checks(reference, current, ref_idx, cur_idx, perms, config)
    families = [checks]
    domain = _domain_check(reference, current, ref_idx, cur_idx, config) if "domain" in config.checks else None
    if domain is not None:
        families.append([domain[0]])
    if {"predictions", "embeddings"} & set(config.checks) and reference.model and current.model:
        families.append(_model_checks(reference.model, current.model, config, rng))
    families = [family for family in families if family]
    for family in families:  # min-p within the checks that share relabellings, Bonferroni across those sets
        adjusted = stats.min_p_adjusted([c.permuted for c in family])
        for check, p_adj in zip(family, adjusted):
            check.p_adjusted = min(1.0, p_adj * len(families))
            check.drifted = check.p_adjusted <= config.alpha and check.effect >= check.min_effect
            check.permuted = None
    checks = [c for family in families for c in family]
    # importances only for a significant classifier: on the null they only name noise
    importances = domain[1].importances(config.seed) if domain and domain[0].p_adjusted <= config.alpha else {}
    if not checks:  # only prediction / embedding checks were chosen, and there is no model
        raise InspektError(
            f"none of the chosen checks ({', '.join(config.checks)}) could run: prediction and "
            "embedding checks need a model bundle as REFERENCE (its reference.json holds the model's "
            "outputs); give a bundle, or choose properties, pixels or domain"
        )
    weak = _power_notes(checks, config, len(reference), len(current))
    notes += _resolution_notes(checks, config) + weak
    return DriftResult(
        any(c.drifted for c in checks),
        config.alpha,
        len(reference),
        len(current),
        checks,
        importances,
        list(reference.skipped),
        list(current.skipped),
        notes,
        config,
        inconclusive=bool(weak),
    )


def _resolution_notes(checks: list[Check], config: DriftConfig) -> list[str]:
    """Say so when too few relabellings hide a difference: a check that beat every relabelling
    (p = 1 / (1 + B)) and whose effect is large enough can still miss alpha once adjusted for the
    number of checks, because with B relabellings the adjusted p-value cannot go much below
    (number of checks) / (1 + B)."""
    floor = 1.0 / (1 + config.permutations)
    hidden = [
        c.name
        for c in checks
        if c.p_value <= floor * (1 + 1e-9) and c.effect >= c.min_effect and c.p_adjusted > config.alpha
    ]
    if not hidden:
        return []
    needed = int(math.ceil(2 * len(checks) / config.alpha / 100.0)) * 100
    remedy = (
        f"use permutations >= {needed}"
        if needed <= MAX_PERMUTATIONS
        else f"choose fewer checks or a larger alpha (permutations stop at {MAX_PERMUTATIONS})"
    )
    return [
        f"{', '.join(hidden)} beat every one of the {config.permutations} relabellings but cannot reach "
        f"alpha={config.alpha:g} after adjusting for {len(checks)} checks; {remedy}"
    ]


def _power_notes(checks: list[Check], config: DriftConfig, n_ref: int, n_cur: int) -> list[str]:
    """Say so when a side is too small for its large effects to count: a "no drift" from a handful of
    images is inconclusive, not reassuring."""
    few = min(n_ref, n_cur)
    moved = [c.name for c in checks if not c.drifted and c.effect >= c.min_effect and c.p_adjusted > config.alpha]
    if few >= FEW_IMAGES or not moved or any(c.drifted for c in checks):
        return []
    side = "reference" if n_ref < n_cur else "current"
    return [
        f"{', '.join(moved[:4])}{' ...' if len(moved) > 4 else ''} moved by at least the minimum effect, but "
        f"{few} {side} images cannot tell that from chance: treat no drift here as inconclusive and check again "
        f"with {FEW_IMAGES} or more images a side"
    ]


def _subsets(n_ref: int, n_cur: int, cap: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, list[str]]:
    notes = []

    def take(n: int, side: str) -> np.ndarray:
        if n <= cap:
            return np.arange(n)
        notes.append(f"the tests used a random {cap} of the {n} {side} images (max_images)")
        return np.sort(rng.choice(n, cap, replace=False))

    return take(n_ref, "reference"), take(n_cur, "current"), notes


def _property_checks(ref: Profile, cur: Profile, ri, ci, perms, config: DriftConfig, notes: list[str]) -> list[Check]:
    checks, not_applicable = [], []
    for prop in PROPERTIES:
        r, c = ref.values[prop.name][ri], cur.values[prop.name][ci]
        if np.isnan(r).all() and np.isnan(c).all():
            not_applicable.append(prop.name)
            continue
        statistic, p, permuted = stats.permutation_p(stats.ks_na, np.r_[r, c], perms)
        na_gap = abs(np.isnan(r).mean() - np.isnan(c).mean())
        effect = max(stats.normalised_wasserstein(r, c), na_gap)
        checks.append(
            Check(
                prop.name,
                "property",
                statistic,
                "KS",
                p,
                effect,
                "normalised Wasserstein",
                config.min_effect,
                _mean(r),
                _mean(c),
                {
                    "ks_p_value": stats.ks_p_value(r, c),
                    "psi": stats.psi(r, c),
                    "not_applicable_reference": float(np.isnan(r).mean()),
                    "not_applicable_current": float(np.isnan(c).mean()),
                    "resolution": prop.resolution,
                },
                permuted=permuted,
            )
        )
    if not_applicable:
        notes.append(f"not applicable to any image (greyscale sets have no colour): {', '.join(not_applicable)}")
    return checks


def _mean(values: np.ndarray) -> float | None:
    values = values[~np.isnan(values)]
    return float(values.mean()) if len(values) else None


def _pixel_checks(ref: Profile, cur: Profile, ri, ci, perms, config: DriftConfig) -> list[Check]:
    checks = []
    for i, channel in enumerate(CHANNELS):
        fine_ref, fine_cur = ref.pixel_histogram[i], cur.pixel_histogram[i]
        if not fine_ref.sum() or not fine_cur.sum():
            continue  # colour channels need colour images on both sides (the colour properties see the rest)
        coarse = np.vstack([ref.image_histograms[ri, i], cur.image_histograms[ci, i]])
        statistic, p, permuted = stats.permutation_p(stats.histogram_js, coarse, perms)
        kl = stats.kl_divergence(fine_ref, fine_cur)
        js = float(stats.js_distance(fine_ref, fine_cur))
        levels = np.arange(len(fine_ref))
        details: dict[str, Any] = {"kl": kl}
        if config.kl_threshold is not None:
            details |= {"kl_threshold": config.kl_threshold, "kl_rule_fires": kl > config.kl_threshold}
        checks.append(
            Check(
                f"pixels:{channel}",
                "pixels",
                statistic,
                "JS distance, 32 bins",
                p,
                js,
                "JS distance",
                config.min_js,
                float(fine_ref @ levels / fine_ref.sum()),
                float(fine_cur @ levels / fine_cur.sum()),
                details,
                permuted=permuted,
            )
        )
    return checks


def property_matrix(profile: Profile, index: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(n, properties) matrix of the rows at ``index`` and the column names."""
    names = [p.name for p in PROPERTIES]
    return np.column_stack([profile.values[n][index] for n in names]), names


def _domain_check(ref: Profile, cur: Profile, ri, ci, config: DriftConfig) -> tuple[Check, DomainFit] | None:
    """The domain classifier's check: held-out AUC, relabelled over the held-out half only (its own
    relabellings, so it is a family of its own)."""
    x_ref, names = property_matrix(ref, ri)
    x_cur, _ = property_matrix(cur, ci)
    usable = ~(np.isnan(x_ref).all(axis=0) & np.isnan(x_cur).all(axis=0))
    names = [n for n, u in zip(names, usable) if u]
    fit = fit_domain_classifier(x_ref[:, usable], x_cur[:, usable], names, config.seed)
    if fit is None:
        return None
    perms = stats.relabellings(fit.n_ref, fit.n_cur, config.permutations, np.random.default_rng([config.seed, 1]))
    auc, p, permuted = stats.permutation_p(stats.auc, stats.average_ranks(fit.scores), perms)
    score = max(2 * auc - 1, 0.0)
    return Check(
        "domain_classifier",
        "domain",
        auc,
        "held-out AUC",
        p,
        score,
        "drift score",
        config.min_domain_score,
        details={"trained_on": fit.n_train, "held_out": len(fit.scores)},
        permuted=permuted,
    ), fit


def _model_checks(ref: dict, cur: dict, config: DriftConfig, rng: np.random.Generator) -> list[Check]:
    """Checks on the model's outputs for its own sample of each side (one set of relabellings):
    label mix (chi-square, Cramer's V), score distribution (KS), for detectors the boxes per image
    and their median size (KS) and embeddings (MMD)."""
    ri, ci, _ = _subsets(len(ref["labels"]), len(cur["labels"]), config.max_images, rng)
    perms = stats.relabellings(len(ri), len(ci), config.permutations, rng)
    checks = []
    if "predictions" in config.checks:
        checks += _prediction_checks(ref, cur, ri, ci, perms, config)
    if "embeddings" in config.checks and ref.get("embeddings") and cur.get("embeddings"):
        checks.append(_embedding_check(ref, cur, ri, ci, perms, config))
    return checks


def _prediction_checks(ref: dict, cur: dict, ri, ci, perms, config: DriftConfig) -> list[Check]:
    labels = [str(ref["labels"][i]) for i in ri] + [str(cur["labels"][i]) for i in ci]
    classes = sorted(set(labels))
    onehot = (np.asarray(labels)[:, None] == np.asarray(classes)[None, :]).astype(np.float64)
    chi2, p_labels, permuted_labels = stats.permutation_p(stats.chi_square, onehot, perms)
    n_ref = len(ri)
    mix = {name: [float(onehot[:n_ref, k].mean()), float(onehot[n_ref:, k].mean())] for k, name in enumerate(classes)}
    checks = [
        Check(
            "prediction:label_mix",
            "prediction",
            chi2,
            "chi-square",
            p_labels,
            float(np.sqrt(chi2 / len(labels))),
            "Cramer's V",
            config.min_prediction_effect,
            details={"share": mix},
            permuted=permuted_labels,
        ),
        _ks_output("prediction:score", ref["scores"], cur["scores"], ri, ci, perms, config),
    ]
    if ref.get("box_counts") is not None and cur.get("box_counts") is not None:  # detectors
        checks += [
            _ks_output(f"prediction:{key[:-1]}", ref[key], cur[key], ri, ci, perms, config)
            for key in ("box_counts", "box_sizes")
        ]
    return checks


def _ks_output(name: str, ref: list, cur: list, ri, ci, perms, config: DriftConfig) -> Check:
    """KS permutation test of one number per prediction (score, box count, box size); None = no value."""
    values = np.array(
        [np.nan if v is None else v for v in [ref[i] for i in ri] + [cur[i] for i in ci]], dtype=np.float64
    )
    ks, p, permuted = stats.permutation_p(stats.ks_na, values, perms)
    n_ref = len(ri)
    return Check(
        name,
        "prediction",
        ks,
        "KS",
        p,
        ks,
        "KS",
        config.min_prediction_effect,
        _mean(values[:n_ref]),
        _mean(values[n_ref:]),
        permuted=permuted,
    )


def _embedding_check(ref: dict, cur: dict, ri, ci, perms, config: DriftConfig) -> Check:
    """MMD between the model's embeddings of the two sides: RBF kernel exp(-d^2 / h) with h the
    median squared pairwise distance of the pooled vectors (median heuristic), permutation p-value.
    Effect: sqrt(max(MMD^2 - its mean under relabelling, 0)), the discrepancy beyond small-sample bias."""
    pooled = np.vstack(
        [
            np.asarray([ref["embeddings"][i] for i in ri], np.float64),
            np.asarray([cur["embeddings"][i] for i in ci], np.float64),
        ]
    )
    sq = np.maximum((pooled**2).sum(1)[:, None] + (pooled**2).sum(1)[None, :] - 2 * pooled @ pooled.T, 0)
    bandwidth = float(np.median(sq[~np.eye(len(pooled), dtype=bool)])) or 1.0
    mmd2, p, permuted = stats.permutation_p(stats.mmd2, np.exp(-sq / bandwidth), perms)
    excess = float(np.sqrt(max(mmd2 - permuted[1:].mean(), 0.0)))
    return Check(
        "embeddings",
        "embedding",
        mmd2,
        "MMD^2",
        p,
        excess,
        "excess MMD",
        config.min_embedding_effect,
        details={"dimensions": pooled.shape[1], "bandwidth": bandwidth},
        permuted=permuted,
    )
