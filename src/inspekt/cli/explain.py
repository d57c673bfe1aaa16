"""``inspekt explain``: Grad-CAM overlays for a classification bundle."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Column, Table

from inspekt.cli import app
from inspekt.cli.common import console, err_console, file_cells, file_columns, print_json, progress_bar, unique_name
from inspekt.cli.predict import expand_sources
from inspekt.errors import InspektError
from inspekt.results import BatchReport
from inspekt.storage import as_path


@app.command()
def explain(
    bundle: Path = typer.Argument(..., help="Bundle folder, .inspekt file or run folder (classification)."),
    sources: list[str] = typer.Argument(..., help="Image files, folders or glob patterns."),
    method: str = typer.Option(
        "gradcam",
        "--method",
        help="CAM method, e.g. gradcam, gradcam++, layercam, eigencam (an unknown name lists them all).",
    ),
    target: str = typer.Option(None, "--class", help="Class to explain (default: the predicted class)."),
    layer: str = typer.Option(None, "--layer", help="Dotted name of the layer to explain (default: last stage)."),
    opacity: float = typer.Option(0.5, "--opacity", help="Heat-map weight in the overlay, 0..1."),
    out: Path = typer.Option(
        Path("explanations"), "--out", help="Folder for <stem>_<method>.png: the image and its overlay side by side."
    ),
    overlay_only: bool = typer.Option(False, "--overlay-only", help="Write the overlay alone, without the image."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image (JSON lines)."),
) -> None:
    """Write Grad-CAM overlays showing what drove each image's class; bad files are reported and skipped."""
    from inspekt.io import save_image
    from inspekt.tasks.classify.explain import Explainer

    explainer = Explainer.load(bundle, method=method, layer=layer)
    out = as_path(out)  # a URL folder (s3://...) receives each overlay in one write
    files, report, taken, rows = expand_sources(sources), BatchReport(), set(), []
    if not files:
        raise InspektError(f"no images found in {', '.join(sources)}")
    with progress_bar("explaining", len(files)) as advance:
        for file in files:
            for result in explainer.explain_files([file], target=target, opacity=opacity, report=report):
                picture = result.overlay if overlay_only else result.side_by_side()
                written = save_image(out / unique_name(result.source, method, taken), picture)
                rows.append(result.to_dict() | {"output": str(written)})
            advance()
    if as_json:
        for row in rows:
            print_json(row)
    elif rows:
        table = Table(*file_columns(), "explained", "predicted", Column("overlay", overflow="fold"))
        for row in rows:
            name = Path(row["output"]).name
            table.add_row(*file_cells(row["path"]), row["target"], f"{row['predicted']} {row['score']:.3f}", name)
        console.print(table)
        console.print(f"wrote {len(rows)} overlay(s) to {out}", highlight=False, soft_wrap=True)
    err_console.print(report.summary(), highlight=False)
    if not rows:
        raise InspektError(f"none of the {len(files)} file(s) could be read as an image (see the list above)")
