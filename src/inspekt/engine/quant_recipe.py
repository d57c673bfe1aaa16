"""How a graph is quantised to INT8: the recipes (``recipes_for`` a CPU's instruction sets) and the
quantisation itself (``quantize_onnx``: ONNX Runtime's static QDQ quantisation with min-max ranges).

An export tries the recipes in order and keeps the first one its quality, agreement and speed checks
accept (``inspekt.engine.quantize``): the fast one first, then a careful one that also leaves the
*narrow* convolutions in fp32 (fewer than ``NARROW_OUT`` output channels, or, for ungrouped ones, dot
products shorter than ``NARROW_DOT`` = input channels x kernel area). Such layers are where 8-bit
arithmetic loses most (a few channels carry all the signal) and gains least (too little work per output
for 8-bit kernels).

Every recipe is QDQ format, per-channel weights, unsigned activations with signed weights (U8S8) and
min-max activation ranges. Medians of 3 interleaved measurements, 2 threads, 128 px grey magnetic-tile
images, noise about +-10 % (more on small models):

- with VNNI (AVX-512 VNNI, AVX-VNNI, AMX): every layer in 8 bits. Measured on a 2-core AMD EPYC with
  AVX-512 VNNI (flags ``avx avx2 fma avx512f avx512bw avx512vl avx512_vnni avx512_bf16``), INT8 / fp32
  images/s at batch 1 / 16: resnet18 (92 % accurate) U8S8 3.4x / 3.4x, but S8S8 (signed activations,
  the recipe used here before and ONNX Runtime's first suggestion for VNNI) 1.3x / 1.3x, and for a
  71 % resnet18 0.65x / 0.87x (S8S8 QOperator 0.18x / 0.20x); tiny_cnn (width 16) U8S8 1.5-2.0x /
  1.8-2.0x, S8S8 about 2.0x / 2.2x; the tiny CenterNet of ``benchmarks/detect.py`` U8S8 1.3-1.6x /
  1.3-1.6x. The first conv in fp32 cost resnet18 a quarter of its gain (2.6x / 2.35x) and bought no
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
- the careful recipe, measured on the VNNI EPYC with the tiny CenterNet of ``benchmarks/detect.py``
  (encoder width 8; 268 test images): every conv in 8 bits lost 1.26 points of mAP@0.5 (0.3065 ->
  0.2939) with 92.6 % of boxes agreeing, refused at the default limits; with its 8 narrow convs in
  fp32 it lost 0.14 points with 96.0 % agreeing, at 1.06-1.29x / 1.26-1.76x fp32's speed (every conv in
  8 bits: 1.34-1.54x / 1.29-1.58x). ONNX Runtime's profile says why: its 8-bit kernel ran the 1 -> 8
  channel first conv 4x slower than fp32 and the 8 -> 8 channel convs 1.2x slower, while the 32-channel
  head convs ran 3x faster. Leaving only the heads' last convs, or only the first 1, 2 or 4 convs, in
  fp32 kept 1.0-2.6 points of the loss.
- ranges: percentile ranges (ONNX Runtime's, cutting 0.0005 % off each end) were tried on the VNNI
  CPU and not kept. They raised a 71 % resnet18's agreement with fp32 from 95.5 % to 97-98 %, kept a
  92 % one within the same 98.9-99.6 %, and cost the detector 3.1 points of mAP@0.5 where min-max
  ranges cost 1.3 (box agreement 85.7 % against 92.6 %): a heat map's peaks are its extremes. Its
  histograms hold every activation at once: the export of resnet18 on 200 images peaked at 2.5 GB, not 0.74.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quant_pre_process,
    quantize_static,
)

from inspekt.engine.quant_speed import has_vnni

NARROW_OUT = 16  # a conv with fewer output channels is narrow
NARROW_DOT = 32  # ... and so is one whose input channels x kernel area is below this


@dataclass(frozen=True)
class Recipe:
    """How a graph is quantised (see the module notes for why each CPU gets its own)."""

    activation: QuantType
    weight: QuantType
    fp32_first_conv: bool
    fp32_narrow: bool = False

    def describe(self) -> str:
        """``QDQ U8S8 per-channel, first conv fp32``."""
        types = "".join("S8" if t == QuantType.QInt8 else "U8" for t in (self.activation, self.weight))
        kept = [
            *(["first conv"] if self.fp32_first_conv else []),
            *(["narrow convs"] if self.fp32_narrow else []),
        ]
        return f"QDQ {types} per-channel" + (f", {' and '.join(kept)} fp32" if kept else "")

    def fp32_convs(self, graph: onnx.ModelProto) -> list[str]:
        """The names of the convolutions this recipe leaves in fp32."""
        weights = {w.name: list(w.dims) for w in graph.graph.initializer}
        convs = [node for node in graph.graph.node if node.op_type == "Conv"]
        kept = {convs[0].name} if self.fp32_first_conv and convs else set()
        if self.fp32_narrow:
            kept |= {node.name for node in convs if _narrow(weights.get(node.input[1]), _groups(node))}
        return [node.name for node in convs if node.name in kept]


def _groups(node: onnx.NodeProto) -> int:
    return next((attr.i for attr in node.attribute if attr.name == "group"), 1)


def _narrow(dims: list[int] | None, groups: int) -> bool:
    """Whether a conv weight of shape (out, in / groups, kh, kw) is too narrow to gain from 8 bits. The
    dot-product length counts for plain convs only: grouped (depthwise) ones are short by design, have their
    own kernels and were not measured, so only their output channels count."""
    if dims is None or len(dims) < 3:
        return False
    return dims[0] < NARROW_OUT or (groups == 1 and int(np.prod(dims[1:])) < NARROW_DOT)


def recipes_for(flags: Sequence[str], prepared: bytes) -> list[Recipe]:
    """The recipes to try, in order, on a CPU with these instruction-set flags: the fastest measured,
    then the careful one (narrow convs in fp32 as well) where it differs and leaves some conv in 8 bits.

    Args:
        flags: the CPU's instruction-set flags (``quant_speed.cpu_flags``).
        prepared: the fp32 graph as ``prepare`` returns it.
    """
    fast = Recipe(QuantType.QUInt8, QuantType.QInt8, fp32_first_conv=not has_vnni(flags))
    careful = replace(fast, fp32_narrow=True)
    graph = onnx.load_from_string(prepared)
    convs = sum(node.op_type == "Conv" for node in graph.graph.node)
    kept = careful.fp32_convs(graph)
    return [fast] if len(kept) in (len(fast.fp32_convs(graph)), convs) else [fast, careful]


class BatchReader(CalibrationDataReader):
    """Feeds preprocessed NCHW batches to ONNX Runtime's calibrator, one per ``get_next``."""

    def __init__(self, batches: Sequence[np.ndarray]):
        self._batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        """The next ``{"input": batch}`` (every bundle graph names its input so), or None at the end."""
        batch = next(self._batches, None)
        return None if batch is None else {"input": batch}


def prepare(onnx_bytes: bytes) -> bytes:
    """The graph shape-inferred and optimised for quantisation (ONNX Runtime's ``quant_pre_process``)."""
    with tempfile.TemporaryDirectory(prefix="inspekt-int8-") as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        fp32.write_bytes(onnx_bytes)
        # ONNX's own shape inference is enough for these convolutional graphs; ORT's symbolic one (meant
        # for dynamic transformer shapes) gives up on some (an upsampling by scale) and leaves
        # sym_shape_infer_temp.onnx and a <uuid>.data file in the working directory when it does
        quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
        return prepared.read_bytes()


def quantize_onnx(prepared: bytes, batches: Sequence[np.ndarray], recipe: Recipe) -> bytes:
    """Static INT8 quantisation (QDQ, per-channel weights, MinMax calibration, ``recipe``'s types).

    Args:
        prepared: the fp32 graph (input named ``input``) as ``prepare`` returns it.
        batches: preprocessed NCHW float32 calibration batches.
        recipe: the 8-bit types and the layers left in fp32 (``recipes_for`` the CPU).

    Returns:
        The INT8 graph.
    """
    with tempfile.TemporaryDirectory(prefix="inspekt-int8-") as tmp:
        source, int8 = Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(prepared)
        quantize_static(
            str(source),
            str(int8),
            BatchReader(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            nodes_to_exclude=recipe.fp32_convs(onnx.load_from_string(prepared)),
            activation_type=recipe.activation,
            weight_type=recipe.weight,
            calibrate_method=CalibrationMethod.MinMax,
        )
        return int8.read_bytes()
