"""Is INT8 faster here? ``measure_speedup`` times the fp32 and INT8 graphs on the machine it runs on,
and ``cpu_flags`` names the instruction sets that decide the answer.

INT8 pays off only where the CPU has fast 8-bit dot products (AVX-512 VNNI / AVX-VNNI / AMX on x86):
on an AVX2-only CPU ONNX Runtime's INT8 kernels can be slower than its fp32 ones, so an INT8 export
measures before it ships. Both graphs get the same preprocessed images at batch 1 and batch 16, with
ONNX Runtime's default session options (as the Predictor runs them); each is warmed up, then timed in
blocks taken in turns (fp32, int8, int8, fp32: a block never follows itself, so neither graph always
runs second), and the ratio is the median fp32 time over the median INT8 time (above 1: INT8 is faster).

Which quantisation recipe is fastest depends on the instruction set too: ``quant_recipe``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

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
