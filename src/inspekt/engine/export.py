"""Export: a bundle's ONNX graph exported again from its weights and parity-checked (INT8 is
``inspekt.engine.quantize``)."""

from __future__ import annotations

from pathlib import Path

from inspekt.bundle import REFERENCE, Bundle, open_bundle
from inspekt.engine.predictor import task_of
from inspekt.errors import BundleError
from inspekt.models.runtime import ParityReport, load_network, save_bundle


def default_target(source: Bundle, archive: bool) -> Path:
    """Where ``export`` writes unless told: ``<name>.inspekt`` or the folder ``<name>-export`` beside the bundle."""
    return source.path.with_name(source.path.name + ("" if archive else "-export"))


def export_bundle(
    bundle: str | Path | Bundle, out: str | Path | None = None, *, archive: bool = True, overwrite: bool = False
) -> tuple[Path, ParityReport]:
    """Write the bundle again (its drift reference kept) with a freshly exported, parity-checked graph.

    Args:
        bundle: bundle folder, ``.inspekt`` file, run folder or an opened ``Bundle``.
        out: where to write (default: beside the bundle, ``<name>.inspekt`` or ``<name>-export``).
        archive: one ``.inspekt`` file rather than a folder.
        overwrite: replace an existing bundle at ``out``.

    Returns:
        The written path and the parity report.

    Raises:
        BundleError: the bundle cannot be opened or is INT8, its card does not suit its task, the graph
            disagrees with torch, or ``out`` exists.
    """
    source = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    task_of(source)  # the task's own card rules, before anything is written
    if source.card.precision == "int8":
        raise BundleError(
            f"{source.path} is an INT8 bundle: exporting its graph again from the fp32 weights would undo the "
            "quantisation while its card keeps the INT8 figures; copy it unchanged (inspekt.bundle.copy_bundle, "
            "or `inspekt export` on the command line), or export the fp32 bundle it was made from"
        )
    target = out or default_target(source, archive)
    extra = {REFERENCE: source.read(REFERENCE)} if source.has(REFERENCE) else None
    card = source.card.model_copy(update={"precision": "fp32"})  # the graph is re-exported from fp32 weights
    return save_bundle(load_network(source), card, target, extra_files=extra, archive=archive, overwrite=overwrite)
