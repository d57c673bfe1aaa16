"""From a bundle to something that runs: the torch network rebuilt from its weights, the ONNX
export with its parity check, and the two backends (ONNX Runtime, torch) the Predictor runs."""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspekt import storage
from inspekt.bundle import CARD, ONNX, WEIGHTS, Bundle, check_target, write_members
from inspekt.card import EMBEDDING, ModelCard
from inspekt.errors import BundleError, InspektError, one_line

PARITY_TOLERANCE = 1e-4  # absolute part of the ONNX-torch allowance
PARITY_RTOL = 1e-5  # relative part: times the output's largest magnitude


ONNX_OPSET = 17


def load_network(bundle: Bundle):
    """Rebuild the torch network from the card and ``weights.safetensors`` (eval mode)."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_safetensors

    from inspekt.models import create_model

    card = bundle.card
    try:
        network = create_model(card.architecture, **card.params)
    except InspektError as exc:
        raise BundleError(f"{bundle.path}: card.json: {exc}") from exc
    try:
        weights = load_safetensors(bundle.read(WEIGHTS))
    except SafetensorError as exc:  # truncated or not a safetensors file (cards of schema 1 record no digest)
        raise BundleError(
            f"{bundle.path}: {WEIGHTS} is damaged or truncated ({one_line(exc)}); copy the whole bundle "
            "again, export it again, or retrain"
        ) from None
    try:
        network.load_state_dict(weights, strict=True)
    except (RuntimeError, ValueError) as exc:
        detail = " ".join(str(exc).split())[:300]
        raise BundleError(
            f"{bundle.path}: weights do not fit {card.architecture} as the card describes it: {detail}"
        ) from exc
    return network.eval()


def export_onnx(network, card: ModelCard) -> bytes:
    """Export the network to ONNX with a dynamic batch axis."""
    import torch

    dummy = torch.zeros(1, card.input.channels, *card.input.size)
    axes = {"input": {0: "batch"}, **{name: {0: "batch"} for name in card.outputs}}
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(
            with_card_outputs(network, card),
            (dummy,),
            buffer,
            input_names=["input"],
            output_names=list(card.outputs),
            dynamic_axes=axes,
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    return buffer.getvalue()


@dataclass(frozen=True)
class ParityReport:
    """ONNX vs torch agreement measured when a bundle is written.

    Outputs are compared relative to their own scale: an output may differ by ``tolerance`` plus
    ``PARITY_RTOL`` times its largest magnitude (float32 rounding grows with the values: PaDiM's
    Mahalanobis maps in the hundreds differ by ~1e-4 between runtimes, a relative 1e-6).

    Attributes:
        max_abs_diff: the largest absolute difference over every output and input.
        n_inputs: images compared.
        tolerance: the absolute part of the allowance.
        worst: the largest difference as a share of its output's allowance (at most 1 passes).
        worst_output: the output whose difference came closest to (or past) its allowance.
        scale: that output's largest magnitude.
    """

    max_abs_diff: float
    n_inputs: int
    tolerance: float
    worst: float = 0.0
    worst_output: str = ""
    scale: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every output is within its allowance."""
        return self.worst <= 1.0


def check_parity(
    network, onnx_bytes: bytes, card: ModelCard, samples: np.ndarray | None = None, tolerance: float = PARITY_TOLERANCE
) -> ParityReport:
    """Compare ONNX Runtime and torch outputs on random inputs and on sample inputs.

    Args:
        network: the torch network (eval mode).
        onnx_bytes: the exported graph.
        card: the card (input shape, output names).
        samples: optional NCHW float32 batch of real preprocessed inputs.
        tolerance: the absolute part of the allowed difference (see ``ParityReport``).

    Returns:
        The largest differences, absolute and relative to each output's allowance.
    """
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, card.input.channels, *card.input.size), dtype=np.float32)]
    if samples is not None and len(samples):
        batches.append(np.asarray(samples, dtype=np.float32))
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    worst_abs, worst = 0.0, (0.0, "", 0.0)
    with torch.no_grad():
        for batch in batches:
            expected = with_card_outputs(network, card)(torch.from_numpy(batch))
            expected = expected if isinstance(expected, (tuple, list)) else (expected,)
            for name, got, want in zip(card.outputs, session.run(None, {"input": batch}), expected):
                want = want.numpy()
                diff, scale = float(np.max(np.abs(got - want))), float(np.max(np.abs(want)))
                worst_abs = max(worst_abs, diff)
                worst = max(worst, (diff / (tolerance + PARITY_RTOL * scale), name, scale))
    return ParityReport(worst_abs, sum(len(b) for b in batches), tolerance, *worst)


def save_bundle(
    network,
    card: ModelCard,
    out: str | Path,
    *,
    samples: np.ndarray | None = None,
    extra_files: dict[str, bytes] | None = None,
    archive: bool = False,
    tolerance: float = PARITY_TOLERANCE,
    overwrite: bool = False,
) -> tuple[Path, ParityReport]:
    """Export, parity-check and write a bundle; nothing is written when the check fails.

    Args:
        network: the trained torch network.
        card: its card.
        out: bundle folder to write (or ``.inspekt`` file when ``archive``).
        samples: real preprocessed inputs (NCHW float32) for the parity check.
        extra_files: further members, e.g. ``{"reference.json": ...}``.
        archive: write a single ``.inspekt`` zip instead of a folder.
        tolerance: the absolute part of the parity allowance (``ParityReport``).
        overwrite: replace an existing bundle at ``out`` (anything else there is never replaced).

    Returns:
        The written path and the parity report.

    Raises:
        BundleError: ONNX and torch disagree beyond the tolerance, or ``out`` exists.
    """
    from safetensors.torch import save as save_safetensors

    out = check_target(storage.as_path(out), archive, overwrite)

    network = network.eval()
    card = _embedding_output(network, card)
    _check_outputs(network, card, out)
    onnx_bytes = export_onnx(network, card)
    parity = check_parity(network, onnx_bytes, card, samples, tolerance)
    if not parity.ok:
        allowed = tolerance + PARITY_RTOL * parity.scale
        raise BundleError(
            f"refusing to write {out}: ONNX and torch outputs differ by up to {parity.worst * allowed:.3g} in "
            f"{parity.worst_output!r} (allowed {allowed:.3g} for values up to {parity.scale:.3g}) on "
            f"{parity.n_inputs} inputs; the model uses an operation ONNX export does not reproduce"
        )
    state = {k: v.detach().contiguous() for k, v in network.state_dict().items()}
    members = {CARD: card.to_json().encode(), WEIGHTS: save_safetensors(state), ONNX: onnx_bytes}
    members.update(extra_files or {})
    return write_members(out, members, archive), parity


def _embedding_output(network, card: ModelCard) -> ModelCard:
    """Classifiers (one score vector per image) whose head splits off cleanly export their
    penultimate features as a second output, ``embedding`` (for drift checks); the card lists it."""
    import torch

    from inspekt.models.embedding import with_embedding

    probe = torch.randn(2, card.input.channels, *card.input.size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scores = network(probe)
    if not isinstance(scores, torch.Tensor) or scores.ndim != 2:  # maps or several outputs: no embedding
        return card
    outputs = tuple(o for o in card.outputs if o != EMBEDDING)
    if with_embedding(network, probe) is not None:
        outputs += (EMBEDDING,)
    return card.model_copy(update={"outputs": outputs})


def _check_outputs(network, card: ModelCard, out) -> None:
    """The card must name every output of the network, no more and no fewer (the graph's output names)."""
    import torch

    probe = torch.zeros(1, card.input.channels, *card.input.size)
    with torch.no_grad():
        given = with_card_outputs(network, card)(probe)
    count = len(given) if isinstance(given, (tuple, list)) else 1
    if count != len(card.outputs):
        raise BundleError(
            f"refusing to write {out}: card.json outputs names {len(card.outputs)} outputs "
            f"({', '.join(card.outputs)}) but {card.architecture} gives {count}; the card was edited or belongs "
            "to another model: use the bundle as training wrote it, or retrain"
        )


def with_card_outputs(network, card: ModelCard):
    """The network as the card's outputs describe it: the classifier wrapped to also return its
    embedding when the card lists one."""
    from inspekt.models.embedding import WithEmbedding

    if EMBEDDING in card.outputs and not isinstance(network, WithEmbedding):
        return WithEmbedding(network).eval()
    return network.eval()


def _check_graph(bundle: Bundle, session, score_axis: int | None) -> None:
    """model.onnx must take the card's input shape and give one score per class (on ``score_axis``
    of its first output, for models that score classes)."""
    card, (graph_input,) = bundle.card, session.get_inputs()
    wanted = [card.input.channels, *card.input.size]
    if [d for d in graph_input.shape[1:]] != wanted:
        raise BundleError(
            f"{bundle.path}: card.json declares input {wanted} (channels, height, width) but "
            f"model.onnx takes {graph_input.shape[1:]}; the card was edited or belongs to another model"
        )
    first = session.get_outputs()[0].shape
    scores = None if score_axis is None else first[score_axis]
    if scores is not None and scores != len(card.classes):
        raise BundleError(
            f"{bundle.path}: card.json lists {len(card.classes)} classes but model.onnx gives "
            f"{scores} scores; the card was edited or belongs to another model"
        )


class OnnxBackend:
    """Runs ``model.onnx`` with ONNX Runtime on the CPU."""

    name = "onnx"

    def __init__(
        self, bundle: Bundle, threads: int | None = None, score_axis: int | None = None, graph: bytes | None = None
    ):
        """``graph``: run this ONNX graph instead of the bundle's ``model.onnx`` (e.g. an INT8 one being judged)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(
                bundle.read(ONNX) if graph is None else graph, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own types (InvalidProtobuf, Fail, ...)
            detail = " ".join(str(exc).split())[:200]
            raise BundleError(
                f"{bundle.path}: {ONNX} cannot be loaded ({type(exc).__name__}: {detail}); the file is "
                "damaged or not from inspekt: export the bundle again or retrain"
            ) from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        _check_graph(bundle, self.session, score_axis)

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for an NCHW float32 batch."""
        return dict(zip(self.output_names, self.session.run(None, {"input": batch})))


class TorchBackend:
    """Runs the torch network rebuilt from ``weights.safetensors`` (or, with ``of``, a network in memory)."""

    name = "torch"

    def __init__(self, bundle: Bundle, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.network = with_card_outputs(load_network(bundle), bundle.card)
        self.output_names = list(bundle.card.outputs)

    @classmethod
    def of(cls, network, output_names: Sequence[str]) -> TorchBackend:
        """A backend over a network that has no bundle yet (e.g. just fitted, for calibration)."""
        backend = cls.__new__(cls)
        backend.network, backend.output_names = network.eval(), list(output_names)
        return backend

    def run(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        """Outputs by name for an NCHW float32 batch."""
        import torch

        with torch.inference_mode():
            out = self.network(torch.from_numpy(batch))
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {name: t.numpy() for name, t in zip(self.output_names, out)}
