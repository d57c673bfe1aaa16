"""Is INT8 faster here? ``measure_speedup`` times the fp32 and INT8 graphs on the machine it runs on,
and ``cpu_flags`` names the instruction sets that decide the answer.

INT8 pays off only where the CPU has fast 8-bit dot products (AVX-512 VNNI / AVX-VNNI / AMX on x86):
on an AVX2-only CPU ONNX Runtime's INT8 kernels can be slower than its fp32 ones, so an INT8 export
measures before it ships. Both graphs get the same preprocessed images at batch 1 and batch 16, with
ONNX Runtime's default session options (as the Predictor runs them); each is warmed up, then timed in
blocks taken in turns (fp32, int8, int8, fp32: a block never follows itself, so neither graph always
runs second), and the ratio is the median fp32 time over the median INT8 time (above 1: INT8 is faster).

Which recipe is fastest depends on the instruction set (``recipe_for``; QDQ format, per-channel
weights, unsigned activations with signed weights (U8S8) and min-max activation ranges always).
Medians of 3 interleaved measurements, 2 threads, 128 px grey magnetic-tile images, noise about
+-10 % (more on small models):

- with VNNI (AVX-512 VNNI, AVX-VNNI, AMX): every layer in 8 bits. Measured on a 2-core AMD EPYC with
  AVX-512 VNNI (flags ``avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16``), INT8 / fp32
  images/s at batch 1 / 16: resnet18 (92 % accurate) U8S8 3.4x / 3.4x, but S8S8 (signed activations,
  the recipe used here before and ONNX Runtime's first suggestion for VNNI) 1.3x / 1.3x, and for a
  71 % resnet18 0.65x / 0.87x (S8S8 QOperator 0.18x / 0.20x); tiny_cnn (width 16) U8S8 1.5-2.0x /
  1.8-2.0x, S8S8 about 2.0x / 2.2x; the tiny CenterNet of ``benchmarks/detect.py`` U8S8 1.3-1.45x /
  1.2-1.4x. The first conv in fp32 cost resnet18 a quarter of its gain (2.6x / 2.35x) and bought no
  agreement there (in one sweep 98.9 % against 99.6 % with every conv in 8 bits; labels agreed on
  98.9-99.6 % between calibrations of the same recipe).
- without (AVX2 only): the first convolution left in fp32. Measured on a 2-core AVX2/FMA AMD EPYC (no
  VNNI): resnet18 S8S8 QDQ 0.69x / 0.78x, S8S8 QOperator 0.25x / 0.17x, U8S8 QDQ 1.30x / 1.27x
  (per-tensor weights, QOperator format and 7-bit weights (``reduce_range``) all within the noise of
  it), U8S8 with the first conv in fp32 1.18x / 1.12x. tiny_cnn: every recipe within the noise of
  fp32 (0.9-1.1x), so its INT8 export is refused there as often as not. Labels agreeing with fp32 on
  128 held-out images: leaving the first conv (1 input channel, the least quantisation-friendly
  layer, where 8-bit products without VNNI can saturate) in fp32 raised agreement from 0.77-0.94 to
  0.99 (tiny_cnn) and from 0.94 to 0.96 (resnet18).
- ranges: percentile ranges (ONNX Runtime's, cutting 0.0005 % off each end) were tried on the VNNI
  CPU and not kept. They raised a 71 % resnet18's agreement with fp32 from 95.5 % to 97-98 %, kept a
  92 % one within the same 98.9-99.6 %, and cost the detector 3.1 points of mAP@0.5 where min-max
  ranges cost 1.3 (box agreement 85.7 % against 92.6 %): a heat map's peaks are its extremes. Its
  histograms hold every activation at once: the export of resnet18 on 200 images peaked at 2.5 GB, not 0.74.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from onnxruntime.quantization import QuantType

SPEED_BATCHES = (1, 16)
BLOCK_S = 0.25  # seconds per timed block; 2 blocks per graph and batch size: about 2 s in all
MIN_RUNS, MAX_RUNS = 3, 200  # timed runs per block
# The instruction sets that decide 8-bit and fp32 kernel speed (x86 and Arm names in /proc/cpuinfo).
ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_int8",
    "asimd",
    "asimddp",
    "i8mm",
)
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")

SpeedTimer = Callable[[bytes, bytes, np.ndarray], dict[int, float]]


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> tuple[str, ...]:
    """The instruction-set flags of ``ISA_FLAGS`` this CPU has (empty where /proc/cpuinfo is not there)."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return ()
    found: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            found.update(value.split())
    return tuple(flag for flag in ISA_FLAGS if flag in found)


def has_vnni(flags: Sequence[str]) -> bool:
    """Whether the CPU has 8-bit dot-product instructions (where INT8 is known to pay off)."""
    return any(flag in flags for flag in VNNI_FLAGS)


def describe_cpu(flags: Sequence[str]) -> str:
    """``avx avx2 fma, no VNNI`` — the flags an INT8 speed figure was measured on, in words."""
    named = " ".join(flags) or "flags unknown"
    return f"{named}{'' if has_vnni(flags) else ', no VNNI'}"


@dataclass(frozen=True)
class Recipe:
    """How a graph is quantised (see the module notes for why each CPU gets its own)."""

    activation: QuantType
    weight: QuantType
    fp32_first_conv: bool

    def describe(self) -> str:
        """``QDQ U8S8 per-channel, first conv fp32``."""
        types = "".join("S8" if t == QuantType.QInt8 else "U8" for t in (self.activation, self.weight))
        return f"QDQ {types} per-channel{', first conv fp32' if self.fp32_first_conv else ''}"


def recipe_for(flags: Sequence[str]) -> Recipe:
    """The fastest measured recipe for a CPU with these instruction-set flags."""
    return Recipe(QuantType.QUInt8, QuantType.QInt8, fp32_first_conv=not has_vnni(flags))


def _timed_block(session, feed: dict[str, np.ndarray]) -> list[float]:
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < MAX_RUNS and (len(times) < MIN_RUNS or time.perf_counter() - start < BLOCK_S):
        t0 = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - t0)
    return times


def _sessions(graphs: Sequence[bytes]):
    import onnxruntime as ort

    return [ort.InferenceSession(g, providers=["CPUExecutionProvider"]) for g in graphs]


def measure_speedup(fp32: bytes, int8: bytes, images: np.ndarray) -> dict[int, float]:
    """INT8 speed over fp32 speed at each of ``SPEED_BATCHES`` (above 1: INT8 is faster).

    Args:
        fp32: the fp32 graph (input named ``input``).
        int8: the INT8 graph of the same model.
        images: preprocessed NCHW float32 images (repeated to fill a batch when fewer).

    Returns:
        ``{batch size: fp32 median time / INT8 median time}``.
    """
    sessions = _sessions([fp32, int8])
    ratios: dict[int, float] = {}
    for batch in SPEED_BATCHES:
        feed = {"input": np.ascontiguousarray(np.resize(images, (batch, *images.shape[1:])))}
        for session in sessions:  # warm-up: allocations, kernel choice
            for _ in range(2):
                session.run(None, feed)
        times: list[list[float]] = [[], []]
        for which in (0, 1, 1, 0):
            times[which].extend(_timed_block(sessions[which], feed))
        ratios[batch] = statistics.median(times[0]) / statistics.median(times[1])
    return ratios
