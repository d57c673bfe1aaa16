"""What a drift check is asked (``DriftConfig``) and what it answers (``Check``, ``DriftResult``):
typed numbers, rendered elsewhere (``inspekt.drift.report``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import model_validator

from inspekt.config import Settings
from inspekt.errors import ConfigError, did_you_mean
from inspekt.profiling.profile import Profile
from inspekt.results import SkippedFile

CHECKS = ("properties", "pixels", "domain", "predictions", "embeddings")


def parse_checks(text: str | None) -> tuple[str, ...]:
    """The checks a comma-separated option names (``--checks``, a form field), blanks dropped; the
    settings that take them say which are known."""
    return tuple(c.strip() for c in (text or "").split(",") if c.strip())


MIN_PERMUTATIONS, MAX_PERMUTATIONS = 19, 5000  # p-values reach 1/(1+B) = 0.05; the work stays bounded


class DriftConfig(Settings):
    """Settings of a drift check.

    Attributes:
        alpha: false-alarm rate for the whole comparison (all checks together).
        permutations: relabellings per permutation test, 19 to 5000 (p-values are at least 1 / (1 + this)).
        checks: which families of checks to run (``CHECKS``).
        min_effect: smallest normalised Wasserstein distance (in reference standard deviations) for
            a property to count as drifted; for colour properties, also the change in the share of
            colour images.
        min_js: smallest Jensen-Shannon distance (0-1) between pixel histograms.
        min_domain_score: smallest domain-classifier score max(2 AUC - 1, 0).
        min_prediction_effect: smallest Cramer's V (label mix) or KS statistic (scores).
        min_embedding_effect: smallest excess MMD of the model's embeddings (see ``_embedding_check``).
        kl_threshold: the fixed rule "KL(reference || current) > threshold" reported beside each
            pixel histogram (not part of the verdict); None to leave it out.
        max_images: images per side used by the tests (a seeded random subset beyond that).
        seed: seeds the relabellings, subsets and classifier.
    """

    alpha: float = 0.05
    permutations: int = 1000
    checks: tuple[str, ...] = CHECKS
    min_effect: float = 0.1
    min_js: float = 0.05
    min_domain_score: float = 0.2
    min_prediction_effect: float = 0.1
    min_embedding_effect: float = 0.1
    kl_threshold: float | None = None
    max_images: int = 5000
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> DriftConfig:
        if not 0 < self.alpha < 1:
            raise ConfigError(f"alpha must be between 0 and 1 (e.g. 0.05), not {self.alpha}")
        if not MIN_PERMUTATIONS <= self.permutations <= MAX_PERMUTATIONS:
            raise ConfigError(
                f"permutations must be {MIN_PERMUTATIONS} to {MAX_PERMUTATIONS}, not {self.permutations} "
                f"(p-values cannot go below 1/(1+permutations); more than {MAX_PERMUTATIONS} costs time and "
                "memory without changing a verdict at the usual alpha); e.g. 1000"
            )
        unknown = [c for c in self.checks if c not in CHECKS]
        if unknown:
            raise ConfigError(
                f"unknown check {unknown[0]!r}; choose from {', '.join(CHECKS)}.{did_you_mean(unknown[0], CHECKS)}"
            )
        if not self.checks:
            raise ConfigError(f"no checks chosen; choose one or more of {', '.join(CHECKS)}")
        if self.max_images < 2:
            raise ConfigError(f"max_images must be at least 2, not {self.max_images}")
        for name in (
            "min_effect",
            "min_js",
            "min_domain_score",
            "min_prediction_effect",
            "min_embedding_effect",
            "kl_threshold",
        ):
            value = getattr(self, name)
            if value is not None and not value >= 0:  # also refuses NaN
                raise ConfigError(f"{name} must be 0 or more, not {value}")
        return self


@dataclass
class Check:
    """One check's numbers. ``drifted`` = adjusted p <= alpha and effect >= min_effect."""

    name: str
    kind: str  # property | pixels | domain | prediction | embedding
    statistic: float
    statistic_name: str
    p_value: float
    effect: float
    effect_name: str
    min_effect: float
    reference: float | None = None  # a summary of each side: mean, share ...
    current: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    p_adjusted: float = 1.0
    drifted: bool = False
    permuted: np.ndarray | None = field(default=None, repr=False, compare=False)  # [T_obs, T_1..T_B], while adjusting


@dataclass
class DriftResult:
    """The outcome of a drift check: numbers only (``report`` renders them)."""

    drift: bool
    alpha: float
    n_reference: int
    n_current: int
    checks: list[Check]
    importances: dict[str, float]
    skipped_reference: list[SkippedFile]
    skipped_current: list[SkippedFile]
    notes: list[str]
    config: DriftConfig
    reference_profile: Profile | None = field(default=None, repr=False)
    current_profile: Profile | None = field(default=None, repr=False)
    sources: dict[str, str] = field(default_factory=dict)  # what was compared: {"reference": ..., "current": ...}
    inconclusive: bool = False  # no drift, but too few images for effects at least the minimum to count

    @property
    def verdict(self) -> str:
        """ "Drift detected", "Inconclusive ..." or "No significant drift detected" (every report's headline)."""
        if self.drift:
            return "Drift detected"
        return "Inconclusive: too few images to tell" if self.inconclusive else "No significant drift detected"

    @property
    def drifted(self) -> list[Check]:
        """The drifted checks, largest effect (relative to its minimum) first."""
        return sorted((c for c in self.checks if c.drifted), key=lambda c: -c.effect / max(c.min_effect, 1e-9))

    def check(self, name: str) -> Check:
        """The check called ``name`` (e.g. ``"brightness"``, ``"pixels:grey"``, ``"domain_classifier"``)."""
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(f"no check named {name!r}; have {', '.join(c.name for c in self.checks)}")
