"""Model bundles: a folder or a single ``.inspekt`` zip holding everything needed to predict.

    card.json            the ModelCard (task, classes, preprocessing, thresholds, ...)
    weights.safetensors  torch weights (fine-tuning, Grad-CAM); never a pickle
    model.onnx           the inference graph, parity-checked against torch when written
    reference.json       the training images' drift profile (when present)

Writing a bundle exports ONNX and refuses to write anything when ONNX and torch disagree.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspekt import storage
from inspekt.card import EMBEDDING, ModelCard, parse_card
from inspekt.errors import BundleError, InspektError

SUFFIX = ".inspekt"
CARD, WEIGHTS, ONNX, REFERENCE = "card.json", "weights.safetensors", "model.onnx", "reference.json"
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".joblib"}
PARITY_TOLERANCE = 1e-4
ONNX_OPSET = 17


class Bundle:
    """A read-only view of a bundle folder or ``.inspekt`` zip, with its validated card.

    ``path`` is a ``Path`` or, for URLs, a ``storage.RemotePath``: a remote folder's files are
    fetched one at a time when read, a remote zip is fetched once and read from memory.
    """

    def __init__(self, path: Path | storage.RemotePath, members: dict[str, bytes] | None = None):
        self.path = path
        self._members = members  # zip content; None for a folder
        self.card: ModelCard = parse_card(self.read(CARD), where=str(path))
        _check_consistent(self.card, str(path))

    def has(self, name: str) -> bool:
        """Whether the bundle holds the file ``name``."""
        return name in self._members if self._members is not None else (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        """The bytes of file ``name``; raises ``BundleError`` naming what is missing."""
        if not self.has(name):
            raise BundleError(
                f"{self.path}: bundle has no {name}; it is incomplete: copy the whole bundle again or retrain"
            )
        return self._members[name] if self._members is not None else (self.path / name).read_bytes()

    def __repr__(self) -> str:
        card = self.card
        return (
            f"Bundle({str(self.path)!r}, task={card.task}, architecture={card.architecture}, "
            f"classes={len(card.classes)})"
        )


def _check_consistent(card: ModelCard, where: str) -> None:
    """The registry's conventions: ``num_classes`` and ``in_chans`` must agree with the card."""
    expected = {"num_classes": len(card.classes), "in_chans": card.input.channels}
    for key, value in expected.items():
        if key in card.params and card.params[key] != value:
            raise BundleError(
                f"{where}: card.json params.{key} is {card.params[key]} but the card declares {value} "
                f"({'classes' if key == 'num_classes' else 'input.channels'}); the card was edited or is damaged"
            )


def open_bundle(path: str | Path | storage.RemotePath) -> Bundle:
    """Open a bundle folder or ``.inspekt`` file and validate its card.

    Args:
        path: a bundle folder, a ``.inspekt`` file, or a folder containing ``bundle/``; local or an
            fsspec URL (``s3://bucket/model.inspekt``).

    Returns:
        The opened bundle.

    Raises:
        BundleError: missing path, a pickle checkpoint, not a bundle, or an invalid card.
    """
    path = storage.as_path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise BundleError(
            f"{path}: {path.suffix} files are pickles, which can run arbitrary code when loaded; inspekt "
            "never loads them. Give a bundle folder or .inspekt file (made by `inspekt train` / `inspekt export`)"
        )
    if not path.exists():
        reason = path.missing_reason() if isinstance(path, storage.RemotePath) else "no such bundle"
        raise BundleError(f"{path}: {reason} (give a bundle folder or a {SUFFIX} file)")
    if path.is_dir():
        if not (path / CARD).is_file() and (path / "bundle" / CARD).is_file():
            path = path / "bundle"  # a run folder: use the bundle it holds
        if not (path / CARD).is_file():
            raise BundleError(f"{path}: not a model bundle (no {CARD} inside)")
        return Bundle(path)
    try:
        with zipfile.ZipFile(_zip_source(path)) as archive:
            members = {n: archive.read(n) for n in archive.namelist() if not n.endswith("/")}
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{path}: not a {SUFFIX} bundle (not a readable zip file: {exc})") from exc
    if CARD not in members:
        raise BundleError(f"{path}: not a model bundle (no {CARD} inside the archive)")
    return Bundle(path, members)


def _zip_source(path: Path | storage.RemotePath) -> Path | io.BytesIO:
    # A remote zip is fetched in one request; zipfile then seeks in memory, not over the network.
    return io.BytesIO(path.read_bytes()) if isinstance(path, storage.RemotePath) else path


def is_zip(path: Path | storage.RemotePath) -> bool:
    """Whether ``path`` is a readable zip file (local or remote; remote reads only its end)."""
    if not isinstance(path, storage.RemotePath):
        return zipfile.is_zipfile(path)
    try:
        with path.open("rb") as handle:
            return zipfile.is_zipfile(handle)
    except (OSError, ValueError):
        return False


def load_network(bundle: Bundle):
    """Rebuild the torch network from the card and ``weights.safetensors`` (eval mode)."""
    from safetensors.torch import load as load_safetensors

    from inspekt.models import create_model

    card = bundle.card
    try:
        network = create_model(card.architecture, **card.params)
    except InspektError as exc:
        raise BundleError(f"{bundle.path}: card.json: {exc}") from exc
    try:
        network.load_state_dict(load_safetensors(bundle.read(WEIGHTS)), strict=True)
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
    """ONNX vs torch agreement measured when a bundle is written."""

    max_abs_diff: float
    n_inputs: int
    tolerance: float

    @property
    def ok(self) -> bool:
        """True when the largest difference is within tolerance."""
        return self.max_abs_diff <= self.tolerance


def check_parity(
    network, onnx_bytes: bytes, card: ModelCard, samples: np.ndarray | None = None, tolerance: float = PARITY_TOLERANCE
) -> ParityReport:
    """Compare ONNX Runtime and torch outputs on random inputs and on sample inputs.

    Args:
        network: the torch network (eval mode).
        onnx_bytes: the exported graph.
        card: the card (input shape, output names).
        samples: optional NCHW float32 batch of real preprocessed inputs.
        tolerance: largest allowed absolute difference.

    Returns:
        The largest absolute difference over all outputs and inputs.
    """
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(0)
    batches = [rng.standard_normal((4, card.input.channels, *card.input.size), dtype=np.float32)]
    if samples is not None and len(samples):
        batches.append(np.asarray(samples, dtype=np.float32))
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    worst = 0.0
    with torch.no_grad():
        for batch in batches:
            expected = with_card_outputs(network, card)(torch.from_numpy(batch))
            expected = expected if isinstance(expected, (tuple, list)) else (expected,)
            for got, want in zip(session.run(None, {"input": batch}), expected):
                worst = max(worst, float(np.max(np.abs(got - want.numpy()))))
    return ParityReport(worst, sum(len(b) for b in batches), tolerance)


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
        tolerance: parity tolerance (max abs diff).
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
    onnx_bytes = export_onnx(network, card)
    parity = check_parity(network, onnx_bytes, card, samples, tolerance)
    if not parity.ok:
        raise BundleError(
            f"refusing to write {out}: ONNX and torch outputs differ by {parity.max_abs_diff:.3g} "
            f"(> {tolerance:g}) on {parity.n_inputs} inputs; the model uses an operation ONNX export "
            "does not reproduce"
        )
    state = {k: v.detach().contiguous() for k, v in network.state_dict().items()}
    members = {CARD: card.to_json().encode(), WEIGHTS: save_safetensors(state), ONNX: onnx_bytes}
    members.update(extra_files or {})
    return _write_members(out, members, archive), parity


def _embedding_output(network, card: ModelCard) -> ModelCard:
    """Classifiers whose head splits off cleanly export their penultimate features as a second
    output, ``embedding`` (for drift checks); the card lists it."""
    import torch

    from inspekt.models.embedding import with_embedding

    if card.task != "classify":
        return card
    probe = torch.randn(2, card.input.channels, *card.input.size, generator=torch.Generator().manual_seed(0))
    outputs = tuple(o for o in card.outputs if o != EMBEDDING)
    if with_embedding(network, probe) is not None:
        outputs += (EMBEDDING,)
    return card.model_copy(update={"outputs": outputs})


def with_card_outputs(network, card: ModelCard):
    """The network as the card's outputs describe it: the classifier wrapped to also return its
    embedding when the card lists one."""
    from inspekt.models.embedding import WithEmbedding

    if EMBEDDING in card.outputs and not isinstance(network, WithEmbedding):
        return WithEmbedding(network).eval()
    return network.eval()


def check_target(out: Path | storage.RemotePath, archive: bool, overwrite: bool) -> Path | storage.RemotePath:
    """Where to write; refuses to replace anything but a bundle, and a bundle only when asked."""
    out = storage.as_path(out)
    out = out if not archive or out.suffix == SUFFIX else out.with_name(out.name + SUFFIX)
    if not out.exists():
        return out
    is_bundle = (out / CARD).is_file() if out.is_dir() else is_zip(out)
    if not is_bundle:
        raise BundleError(f"{out} exists and is not a model bundle; choose another path (nothing was written)")
    if not overwrite:
        raise BundleError(f"{out} already exists; choose another path or pass --overwrite to replace it")
    return out


def _write_members(
    out: Path | storage.RemotePath, members: dict[str, bytes], archive: bool
) -> Path | storage.RemotePath:
    if isinstance(out, storage.RemotePath):
        return _write_remote(out, members, archive)
    # Write next to the target and rename, so a crash never leaves a half-written bundle.
    out.parent.mkdir(parents=True, exist_ok=True)
    if archive:
        tmp = out.with_name(out.name + ".tmp")
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        tmp.replace(out)
        return out
    tmp = Path(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    for name, data in members.items():
        (tmp / name).write_bytes(data)
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out


def _write_remote(out: storage.RemotePath, members: dict[str, bytes], archive: bool) -> storage.RemotePath:
    # Object stores have no rename: a zip is one PUT (never half-written); a folder's files are
    # PUT one by one with the card last, and stale members of an older bundle are removed.
    storage.check_writable(out, "write the bundle")
    if archive:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        out.write_bytes(buffer.getvalue())
        return out
    for name in sorted(members, key=lambda n: n == CARD):
        (out / name).write_bytes(members[name])
    for name in (WEIGHTS, ONNX, REFERENCE):
        if name not in members:
            (out / name).unlink(missing_ok=True)
    return out


def copy_bundle(
    bundle: Bundle,
    out: str | Path,
    *,
    archive: bool = True,
    overwrite: bool = False,
    card: ModelCard | None = None,
    replace: dict[str, bytes] | None = None,
) -> Path:
    """Copy a checked bundle's files byte for byte (no re-export), optionally with a new card or
    replaced members (e.g. a chosen threshold, an INT8 graph). ``out`` may be the bundle itself.

    Raises:
        BundleError: ``out`` exists and is not a bundle, or is one and ``overwrite`` is False.
    """
    names = [n for n in (CARD, WEIGHTS, ONNX, REFERENCE) if bundle.has(n)]
    members = {n: bundle.read(n) for n in names} | (replace or {})
    if card is not None:
        members[CARD] = card.to_json().encode()
    return _write_members(check_target(storage.as_path(out), archive, overwrite), members, archive)
