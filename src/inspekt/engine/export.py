"""Export: a bundle's ONNX graph exported again from its weights and parity-checked (INT8 is
``inspekt.engine.quantize``)."""

from __future__ import annotations

from pathlib import Path

from inspekt.bundle import REFERENCE, Bundle, copy_bundle, open_bundle
from inspekt.engine.predictor import task_of
from inspekt.models.runtime import ParityReport, load_network, save_bundle


def export_bundle(
    bundle: str | Path | Bundle, out: str | Path | None = None, *, archive: bool = True, overwrite: bool = False
) -> tuple[Path, ParityReport | None]:
    """Write the bundle again (its drift reference kept) with a freshly exported, parity-checked graph; an
    INT8 bundle is copied unchanged (its weights are fp32: exported again, the graph would be fp32 while
    the card kept its INT8 figures).

    Args:
        bundle: bundle folder, ``.inspekt`` file, run folder or an opened ``Bundle``.
        out: where to write (default: beside the bundle, ``<name>.inspekt`` or the folder ``<name>-export``).
        archive: one ``.inspekt`` file rather than a folder.
        overwrite: replace an existing bundle at ``out``.

    Returns:
        The written path and the parity report (None for an INT8 bundle, copied).

    Raises:
        BundleError: the bundle cannot be opened, its card does not suit its task, the graph disagrees
            with torch, or ``out`` exists.
    """
    source = bundle if isinstance(bundle, Bundle) else open_bundle(bundle)
    task_of(source)  # the task's own card rules, before anything is written
    target = out or source.path.with_name(source.path.name + ("" if archive else "-export"))
    if source.card.precision == "int8":
        return copy_bundle(source, target, archive=archive, overwrite=overwrite), None
    extra = {REFERENCE: source.read(REFERENCE)} if source.has(REFERENCE) else None
    card = source.card.model_copy(update={"precision": "fp32"})  # the graph is re-exported from fp32 weights
    return save_bundle(load_network(source), card, target, extra_files=extra, archive=archive, overwrite=overwrite)
