"""What an INT8 export measured (``QuantReport``) and how it is judged: none of the task's quality
metrics (a classifier's accuracy and macro F1, a detector's mAP@0.5 and box F1) may drop by more than
``max_drop``, the INT8 graph must agree with the fp32 graph (the same label, the same boxes) on at
least ``min_agreement`` of what they output, and it must run at least ``min_speedup`` times fp32's
speed at batch 1 and batch 16 on the CPU it was measured on."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from inspekt.card import ModelCard
from inspekt.engine.quant_speed import describe_cpu, has_vnni
from inspekt.errors import InspektError
from inspekt.results import SkippedFile

DEFAULT_MAX_DROP = 0.01
DEFAULT_MIN_AGREEMENT = 0.95  # the INT8 graph gives the fp32 graph's label to at least this share of images
DEFAULT_MIN_SPEEDUP = 1.0  # INT8 must be at least as fast as fp32 (never slower)


class Int8Refused(InspektError):
    """An INT8 graph was measured and refused (nothing written); ``report`` holds the measured figures."""

    def __init__(self, message: str, report: QuantReport):
        super().__init__(message)
        self.report = report


class AccuracyDropError(Int8Refused):
    """INT8 lost more accuracy than allowed."""


class SlowerInt8Error(Int8Refused):
    """INT8 ran slower than ``min_speedup`` times fp32's speed on this CPU."""


@dataclass(frozen=True)
class QuantReport:
    """What an INT8 quantisation measured, and where it wrote the bundle.

    Attributes:
        quality: ``{metric: (fp32 value, INT8 value)}`` on the evaluation images, the task's
            ``int8_metrics`` (each may drop by at most ``max_drop``).
        agreement: the share of outputs on which both graphs agree (``agreeing`` says what: labels, boxes).
        agreeing: what ``agreement`` counts, for messages.
        n_images: evaluation images read.
        n_calib: calibration images read.
        max_drop: the largest drop accepted (0.01 = one percentage point).
        size_fp32: bytes of the fp32 ``model.onnx``.
        size_int8: bytes of the INT8 ``model.onnx``.
        min_agreement: the smallest agreement accepted.
        path: the written bundle; None when nothing was written (refused).
        skipped: unreadable images, skipped (each listed once).
        speedup: ``{batch size: INT8 images/s over fp32 images/s}`` measured here (above 1: INT8 is faster).
        min_speedup: the smallest speed-up accepted at every batch size (0: any).
        cpu_flags: the instruction-set flags of the CPU the speed-up was measured on.
        recipe: the quantisation recipe used (format, activation/weight types, weight granularity).
        data: the dataset that calibrated and judged it (folder or CSV).
        tried: the other recipes tried and refused, each as ``attempt()`` gives it (figures and reasons).
    """

    quality: dict[str, tuple[float, float]]
    agreement: float
    agreeing: str
    n_images: int
    n_calib: int
    max_drop: float
    size_fp32: int = 0
    size_int8: int = 0
    min_agreement: float = DEFAULT_MIN_AGREEMENT
    path: Path | None = None
    skipped: tuple[SkippedFile, ...] = field(default_factory=tuple)
    speedup: dict[int, float] = field(default_factory=dict)
    min_speedup: float = DEFAULT_MIN_SPEEDUP
    cpu_flags: tuple[str, ...] = ()
    recipe: str = ""
    data: str = ""
    tried: tuple[dict[str, Any], ...] = ()

    @property
    def drop(self) -> float:
        """The largest drop of a quality metric from fp32 to INT8 (0.01 = one point; negative: INT8 is better)."""
        return max((fp32 - int8 for fp32, int8 in self.quality.values()), default=0.0)

    def failures(self) -> list[str]:
        """Why the INT8 graph is refused (empty: accepted)."""
        found = []
        for name, (fp32, int8) in self.quality.items():
            if fp32 - int8 > self.max_drop + 1e-9:  # a drop equal to the limit passes despite float rounding
                found.append(
                    f"{name} drops {points(fp32 - int8)} points ({fp32:.4f} -> {int8:.4f}; limit "
                    f"{points(self.max_drop)})"
                )
        if self.agreement < self.min_agreement - 1e-9:
            found.append(
                f"{self.agreeing} agree with fp32 on {share(self.agreement)} only "
                f"(at least {percent(self.min_agreement)})"
            )
        return found

    def slower(self) -> bool:
        """Whether INT8 ran below ``min_speedup`` times fp32's speed at some measured batch size."""
        return any(ratio < self.min_speedup - 1e-9 for ratio in self.speedup.values())

    def accepted(self) -> bool:
        """Whether every check passed: quality, agreement and speed."""
        return not self.failures() and not self.slower()

    def reasons(self) -> list[str]:
        """Every reason it is refused: the quality and agreement failures, then the speed (empty: accepted)."""
        speed = [f"it runs at {self.ratios()} fp32's speed (at least {self.min_speedup:g}x)"] if self.slower() else []
        return [*self.failures(), *speed]

    def attempt(self) -> dict[str, Any]:
        """This recipe's figures and why it was refused, as another attempt's ``tried`` holds them."""
        return {
            "recipe": self.recipe,
            "quality": self.quality,
            "agreement": self.agreement,
            "speedup": self.speedup,
            "refused": self.reasons(),
        }

    def ratios(self) -> str:
        """``batch 1 0.65x, batch 16 0.73x`` (INT8 speed over fp32 speed), or ``not measured``."""
        return ", ".join(f"batch {b} {r:.2f}x" for b, r in sorted(self.speedup.items())) or "not measured"

    def speed_line(self) -> str:
        """``INT8 speed / fp32 speed on this CPU (flags): batch 1 0.65x, batch 16 0.73x``."""
        return f"INT8 speed / fp32 speed on this CPU ({describe_cpu(self.cpu_flags)}): {self.ratios()}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (``path`` as a string or None, ``skipped`` as path/reason dicts, ``drop``
        the largest quality drop)."""
        return asdict(self) | {"path": None if self.path is None else str(self.path), "drop": self.drop}

    def summary(self) -> str:
        """Human-readable lines: each quality metric and its drop against the limit, agreement, sizes,
        the speed, skipped files."""
        figures = "; ".join(
            f"{name}: fp32 {fp32:.4f}, int8 {int8:.4f} "
            f"({'drop' if fp32 >= int8 else 'gain'} {points(abs(fp32 - int8))} points)"
            for name, (fp32, int8) in self.quality.items()
        )
        lines = [
            f"on {self.n_images} images: {figures}; limit {points(self.max_drop)} points; "
            f"{self.agreeing} agree on {share(self.agreement)} (at least {percent(self.min_agreement)})",
            f"model.onnx: {self.size_fp32 / 1e6:.3f} MB fp32 -> {self.size_int8 / 1e6:.3f} MB int8 "
            f"({self.size_int8 / max(self.size_fp32, 1):.0%}); calibrated on {self.n_calib} images"
            f"{f' of {self.data}' if self.data else ''}; "
            f"recipe {self.recipe}",
            self.speed_line(),
        ]
        lines.extend(f"also tried: {tried_line(attempt)}" for attempt in self.tried)
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} unreadable image(s):")
            lines.extend(f"  {s.path}: {s.reason}" for s in self.skipped)
        return "\n".join(lines)


def tried_line(attempt: dict[str, Any]) -> str:
    """``QDQ U8S8 per-channel, refused: map50 drops 1.26 points (...)``."""
    return f"{attempt['recipe']}, refused: {'; '.join(attempt['refused'])}"


def pick_refusal(refused: list[QuantReport]) -> QuantReport:
    """The refusal to raise when every recipe tried was refused, naming the others in its ``tried``: the first
    refused for speed alone (``--allow-slower`` then writes it and loses nothing), else the one that loses least
    (the smallest quality drop, then the most agreement), whose limits ``acceptance`` then suggests."""
    speed_only = [report for report in refused if not report.failures()]
    chosen = speed_only[0] if speed_only else min(refused, key=lambda report: (report.drop, -report.agreement))
    return replace(chosen, tried=tuple(report.attempt() for report in refused if report is not chosen))


def percent(limit: float) -> str:
    """``95%``, ``95.5%``: a limit as given, never rounded to another one."""
    return f"{limit * 100:g}%"


def share(fraction: float) -> str:
    """``98.96%``: a measured share with two decimals, as drops are given (with one, 98.96 read "99.0%" beside
    a limit of 99%)."""
    return f"{fraction * 100:.2f}%"


def points(fraction: float) -> str:
    """Percentage points with two decimals: with one, a refused drop of 1.04 read "1.0, limit 1.0"."""
    return f"{fraction * 100:.2f}"


def acceptance(report: QuantReport) -> str:
    """The options that would accept what was measured, for the CLI and for ``quantize_bundle``:
    ``--max-drop 0.02 (max_drop=0.02 in Python)``."""
    # rounded to 1e-6 points first: 0.90 - 0.88 is 0.020000000000000018, which asked for 0.03
    limits = {"max_drop": math.ceil(round(max(report.drop, report.max_drop) * 100, 6)) / 100}
    if report.agreement < report.min_agreement:
        limits["min_agreement"] = math.floor(round(report.agreement * 100, 6)) / 100
    cli = " ".join(f"--{name.replace('_', '-')} {value:g}" for name, value in limits.items())
    return f"{cli} ({', '.join(f'{name}={value:g}' for name, value in limits.items())} in Python)"


def refuse_if_failed(report: QuantReport, where: Path) -> None:
    """Raise the refusal of what was measured: the quality first, then the speed (naming the other recipes
    tried)."""
    before = "".join(f" Also tried: {tried_line(attempt)}." for attempt in report.tried)
    if report.failures():
        one_image = 1 / max(report.n_images, 1)
        coarse = (
            f" On {report.n_images} images one image is {points(one_image)} points of a per-image share such as "
            f"accuracy, more than the {points(report.max_drop)}-point limit: judge on more annotated images."
            if one_image > report.max_drop + 1e-9
            else ""
        )
        raise AccuracyDropError(
            f"{where}: INT8 ({report.recipe}) on {report.n_images} images: {'; '.join(report.failures())}; "
            f"nothing was written.{before}{coarse} "
            f"Calibrate on more representative images (--calib DATA, calib= in Python) or accept the loss with "
            f"{acceptance(report)}",
            report,
        )
    if report.slower():
        ratios, cpu = report.ratios(), describe_cpu(report.cpu_flags)
        if min(report.speedup.values()) >= 1:  # faster, only not by as much as asked (the Python API's min_speedup)
            raise SlowerInt8Error(
                f"{where}: INT8 runs at {ratios} fp32's speed on this CPU ({cpu}), below the {report.min_speedup:g}x "
                f"asked (min_speedup); nothing was written.{before}",
                report,
            )
        elsewhere = "" if has_vnni(report.cpu_flags) else " (e.g. for a VNNI CPU elsewhere)"
        raise SlowerInt8Error(
            f"{where}: INT8 runs at {ratios} fp32's speed on this CPU ({cpu}; at least {report.min_speedup:g}x "
            f"needed): the fp32 bundle is the faster one here, nothing was written. Deploy the fp32 bundle, or "
            f"write INT8 anyway with --allow-slower (min_speedup=0 in Python){elsewhere}.{before}",
            report,
        )


def int8_card(card: ModelCard, report: QuantReport) -> ModelCard:
    """The fp32 card as precision ``int8``, with the measured figures in its metrics and a note on the CPU."""
    metrics = card.metrics | {"int8_agreement": round(report.agreement, 4)}
    for name, (fp32, int8) in report.quality.items():
        metrics |= {f"fp32_{name}": round(fp32, 4), f"int8_{name}": round(int8, 4)}
    metrics |= {f"int8_speedup_b{b}": round(r, 3) for b, r in sorted(report.speedup.items())}
    note = (
        f"{report.speed_line()}; quantised as {report.recipe}; calibrated on {report.n_calib} images of {report.data}, "
        f"judged on {report.n_images} (accepted at most {points(report.max_drop)} points lost, "
        f"{report.agreeing} agreeing on at least {percent(report.min_agreement)})"
        + "".join(f"; also tried: {tried_line(attempt)}" for attempt in report.tried)
    )
    if any(ratio < DEFAULT_MIN_SPEEDUP for ratio in report.speedup.values()):
        note += " (slower than fp32 there; written anyway, as asked)"
    return card.model_copy(update={"precision": "int8", "metrics": metrics, "notes": (*card.notes, note)})
