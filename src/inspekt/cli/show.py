"""``inspekt show BUNDLE``: what a bundle is, from its card and members: task, classes, input, thresholds,
metrics (INT8 figures included), training data, the training's sanity check, notes, files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from inspekt.bundle import MEMBERS, ONNX, REFERENCE, Bundle, open_bundle
from inspekt.card import ModelCard
from inspekt.cli import app
from inspekt.cli.common import console, print_json
from inspekt.errors import InspektError
from inspekt.tasks import thresholds_text


def _input_text(card: ModelCard) -> str:
    spec = card.input
    height, width = spec.size
    colour = "grey" if spec.channels == 1 else "RGB"
    if spec.resize == "tile":
        scaled = f"the image scaled by {spec.scale:g} (overlap {spec.overlap:g})"
        text = f"{colour}, windows of {width} x {height} px over {scaled}"
    else:
        text = f"{colour}, {width} x {height} px (resize {spec.resize})"
    if spec.clahe:
        text += f", CLAHE {spec.clahe:g}"
    return text


def _reference_text(bundle: Bundle) -> str:
    from inspekt.drift.sources import bundle_reference

    if not bundle.has(REFERENCE):
        return "none (made before bundles carried one; give the training images to `inspekt drift`)"
    try:
        return f"{len(bundle_reference(bundle))} training images profiled ({REFERENCE})"
    except InspektError as exc:  # a damaged reference.json: the rest of the card still shows
        return f"unreadable: {exc}"


def bundle_facts(bundle: Bundle) -> dict[str, Any]:
    """The bundle as ``--json`` prints it: its path, the whole card, and each member's size in bytes.

    Raises:
        BundleError: model.onnx is missing, or a member is not the file its card was written with.
    """
    sizes = {name: len(bundle.read(name)) for name in MEMBERS if name == ONNX or bundle.has(name)}
    return {"path": str(bundle.path), "card": bundle.card.model_dump(mode="json", by_alias=True), "files": sizes}


def _size(size: int) -> str:
    return f"{size / 1e6:.2f} MB" if size >= 1e6 else f"{size / 1e3:.1f} kB"


def _metrics_rows(metrics: dict[str, float]) -> list[tuple[str, str]]:
    """The card's metrics in groups: measured on validation at training, measured by the INT8 export, the rest."""
    groups: dict[str, list[str]] = {"validation (training)": [], "INT8 export": [], "metrics": []}
    for name, value in metrics.items():
        key = "validation (training)" if name.startswith("val_") else "metrics"
        key = "INT8 export" if name.startswith(("int8_", "fp32_")) else key
        groups[key].append(f"{name} {value:.4g}")
    return [(key, ", ".join(values)) for key, values in groups.items() if values] or [("metrics", "none")]


def _rows(bundle: Bundle, sizes: dict[str, int]) -> list[tuple[str, str]]:
    card = bundle.card
    sanity = "not checked" if card.sanity is None else "passed" if card.sanity.ok else f"FAILED: {card.sanity.why}"
    data = card.data
    trained_on = f"{data.n_samples} training images, fingerprint {data.fingerprint or '-'}"
    rows = [
        ("task", f"{card.task} ({card.architecture}, {card.precision})"),
        ("classes", ", ".join(card.classes)),
        ("input", _input_text(card)),
        ("thresholds", thresholds_text(card)),
        *_metrics_rows(card.metrics),
        ("data", f"{data.source or 'not recorded'} ({trained_on})"),
        ("sanity", sanity),
        ("drift reference", _reference_text(bundle)),
        ("files", ", ".join(f"{name} {_size(size)}" for name, size in sizes.items())),
        ("trained", f"{card.created_at or 'unknown'} (inspekt {card.versions.get('inspekt', 'unknown')})"),
    ]
    rows.extend(("note", note) for note in card.notes)
    return rows


@app.command()
def show(
    bundle: Path = typer.Argument(..., help="Bundle folder, .inspekt file or run folder."),
    as_json: bool = typer.Option(False, "--json", help="Print the whole card and the members' sizes as JSON."),
) -> None:
    """Show what a model bundle is: task, classes, input, thresholds, metrics, data, sanity check, notes."""
    opened = open_bundle(bundle)
    facts = bundle_facts(opened)
    if as_json:
        print_json(facts)
        return
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column(overflow="fold")
    for key, value in _rows(opened, facts["files"]):
        table.add_row(key, escape(value))
    console.print(escape(str(opened.path)), highlight=False)
    console.print(table, highlight=False)
