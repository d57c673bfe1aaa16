"""``inspekt export``: a bundle's ONNX graph exported again and parity-checked, or quantised to INT8."""

from __future__ import annotations

from pathlib import Path

import typer

from inspekt.cli import app
from inspekt.cli.common import console, print_json, showing_progress
from inspekt.errors import ConfigError


def _export_int8(source, out, calib, limits: dict, folder: bool, overwrite: bool, as_json: bool) -> None:
    from inspekt.engine.quantize import Int8Refused, quantize_bundle

    try:
        with showing_progress():
            report = quantize_bundle(source, out, calib=calib, overwrite=overwrite, archive=not folder, **limits)
    except Int8Refused as exc:
        if as_json:  # the figures stay machine-readable; the error line still follows on stderr
            print_json(exc.report.to_dict() | {"written": False, "refused": str(exc)})
        raise
    if as_json:
        print_json(report.to_dict() | {"written": True, "refused": None})
        return
    console.print(report.summary(), highlight=False)
    print(report.path)


@app.command()
def export(
    bundle: Path = typer.Argument(..., help="Bundle folder, .inspekt file or run folder."),
    out: Path = typer.Option(
        None, "--out", help="Where to write (default: BUNDLE.inspekt beside it; BUNDLE-int8.inspekt with --int8)."
    ),
    folder: bool = typer.Option(False, "--folder", help="Write a folder instead of a single .inspekt file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle at --out."),
    int8: bool = typer.Option(
        False,
        "--int8",
        help="Quantise model.onnx to INT8 (static, calibrated; classify, segment and detect); refused when a quality "
        "metric (accuracy and macro F1; defect IoU and image F1; mAP@0.5 and box F1) drops by more than --max-drop, "
        "or when INT8 runs slower than fp32 on this CPU (measured at batch 1 and 16), with every recipe tried.",
    ),
    calib: Path = typer.Option(
        None,
        "--calib",
        help="With --int8: annotated dataset folder or CSV (labels; masks for segment; boxes or masks for detect) to "
        "calibrate and check quality on (default: the training data named in the card).",
    ),
    max_drop: float = typer.Option(
        None,
        "--max-drop",
        min=0.0,
        max=1.0,
        help="With --int8: largest accepted drop of each quality metric, 0.01 = one point (default 0.01).",
    ),
    min_agreement: float = typer.Option(
        None,
        "--min-agreement",
        min=0.0,
        max=1.0,
        help="With --int8: least share of labels (image verdicts for segment, boxes for detect) that INT8 gives as "
        "fp32 does, 0.95 = 95% (default 0.95).",
    ),
    allow_slower: bool = typer.Option(
        False, "--allow-slower", help="With --int8: write INT8 even when it measures slower than fp32 on this CPU."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Re-export a bundle's ONNX graph from its weights and parity-check it, or quantise it to INT8 (--int8).
    An INT8 bundle is copied unchanged (into a folder with --folder)."""
    from inspekt.bundle import open_bundle
    from inspekt.engine.export import export_bundle

    if not int8 and (calib is not None or max_drop is not None or min_agreement is not None or allow_slower):
        raise ConfigError(
            "--calib, --max-drop, --min-agreement and --allow-slower apply to --int8 only; add --int8 or leave them out"
        )
    source = open_bundle(bundle)
    if int8:
        limits = {"max_drop": max_drop, "min_agreement": min_agreement, "min_speedup": 0.0 if allow_slower else None}
        _export_int8(source, out, calib, {k: v for k, v in limits.items() if v is not None}, folder, overwrite, as_json)
        return
    written, parity = export_bundle(source, out, archive=not folder, overwrite=overwrite)
    if parity is None:  # an INT8 bundle, copied
        if as_json:
            print_json({"bundle": str(written), "precision": "int8", "copied_unchanged": True})
            return
        console.print("model.onnx is INT8: copied unchanged (exported again from the fp32 weights it would be fp32)")
        print(written)
        return
    if as_json:
        print_json(
            {"bundle": str(written), "parity_max_abs_diff": parity.max_abs_diff, "parity_inputs": parity.n_inputs}
        )
        return
    console.print(
        f"ONNX parity: max |diff| {parity.max_abs_diff:.2e} on {parity.n_inputs} inputs "
        f"({parity.worst:.0%} of the allowance, which follows each output's scale)"
    )
    print(written)
