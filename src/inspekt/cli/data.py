"""``inspekt data info | split | synth | import | export``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from inspekt.cli import app
from inspekt.cli.common import console, print_json, print_warning, progress_bar, showing_progress

data_app = typer.Typer(help="Inspect, split and generate datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

SHOWN = 5  # problem files listed before "... and N more"


def _section(title: str, items: list) -> None:
    """A count line (red for problems, yellow for duplicates, green for none) and the first items."""
    style = "red" if items and "duplicates" not in title else "yellow" if items else "green"
    console.print(f"[{style}]{title}: {len(items)}[/]")
    for item in items[:SHOWN]:
        text = f"{item.path}: {item.reason}" if hasattr(item, "reason") else item
        console.print(f"  {text}", highlight=False, soft_wrap=True)
    if len(items) > SHOWN:
        console.print(f"  ... and {len(items) - SHOWN} more (see --json)")


def _render_info(info) -> None:
    console.print(
        f"[bold]{info.root}[/]  layout: [cyan]{info.layout}[/]  images: {info.n_images}"
        + (f" readable (+{len(info.corrupt)} corrupt, below)" if info.corrupt else "")
        + "  "
        f"classes: {len(info.classes)}  tasks: {', '.join(info.tasks) or 'none'}"
    )
    table = Table("class", *info.counts.keys(), title="images per class and split")
    labels = sorted({label for split in info.counts.values() for label in split})
    for label in labels:
        table.add_row(label, *(str(split.get(label, 0)) for split in info.counts.values()))
    console.print(table)
    if info.sizes:
        s = info.sizes
        console.print(
            f"size (w x h): min {s.width_min}x{s.height_min}, median {s.width_median:g}x{s.height_median:g}, "
            f"max {s.width_max}x{s.height_max}"
        )
    sections = []
    if info.masks_found or info.masks_missing:  # a dataset with masks: say how many; else nothing about masks
        console.print(f"masks: {info.masks_found} found, {len(info.masks_missing)} missing")
        sections = [("masks missing", info.masks_missing), ("mask problems", info.mask_problems)]
    if info.imbalance:
        b = info.imbalance
        console.print(
            f"[yellow]warning: the classes are imbalanced: {b['largest']} has {b['largest_n']} images, "
            f"{b['smallest']} {b['smallest_n']} ({b['ratio']:g}:1); train with --class-weights auto or "
            "--sampler balanced, and judge the model by balanced accuracy / macro-F1[/]"
        )
    if info.boxes:  # box annotations, or the boxes a detector reads from the masks
        b = info.boxes
        per_class = ", ".join(f"{name} {n}" for name, n in b.per_class.items()) or "none"
        console.print(
            f"boxes (from {b.source}): {b.n_boxes} in {b.images_with_boxes} images ({per_class}); "
            f"{b.negatives} annotated negatives; size (w x h) min {b.width['min']:g}x{b.height['min']:g}, "
            f"median {b.width['median']:g}x{b.height['median']:g}, max {b.width['max']:g}x{b.height['max']:g}; "
            f"{b.small} smaller than 16 px; {len(b.outside)} image(s) with boxes outside the image (clipped)"
        )
        sections.append(("boxes outside their image (clipped when used)", b.outside))
    if info.annotation_problems:  # only annotation formats have any
        sections.append(("annotation problems (skipped or clipped)", info.annotation_problems))
    sections += [
        ("corrupt files", info.corrupt),
        ("duplicate groups", info.duplicates),
        ("duplicates across splits (leakage)", info.cross_split_duplicates),
        ("near-duplicate groups (same picture re-saved, resized or re-exposed)", info.near_duplicates),
        ("identical files under different labels (one of them is wrong)", info.label_conflicts),
    ]
    for title, items in sections:
        _section(title, items)
    console.print(f"[dim]read in {info.seconds:.2f} s[/]")


@data_app.command("info")
def info_cmd(
    path: Path = typer.Argument(..., help="Dataset folder or CSV."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    workers: int = typer.Option(None, min=1, help="Decoding threads (default: CPU count)."),
) -> None:
    """Detected layout, classes, counts, sizes, masks, corrupt files and duplicates."""
    from inspekt.data import open_dataset
    from inspekt.data.info import describe
    from inspekt.tasks import tasks_for

    ds = open_dataset(path)
    with progress_bar("reading images", len(ds)) as advance:
        info = describe(ds, workers=workers, progress=lambda _: advance(), tasks=tasks_for(ds))
    if as_json:
        print_json(info.to_dict())
    else:
        _render_info(info)


@data_app.command("split")
def split_cmd(
    path: Path = typer.Argument(..., help="Dataset folder or CSV."),
    out: Path = typer.Option(..., "--out", help="CSV file to write."),
    val: float = typer.Option(0.2, help="Validation fraction."),
    test: float = typer.Option(0.2, help="Test fraction."),
    seed: int = typer.Option(0, help="Random seed."),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Replace an existing --out file that is not a split CSV written by inspekt."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write a stratified, deterministic train/val/test split as a CSV (images are not copied)."""
    from inspekt.data import open_dataset
    from inspekt.data.split import split_dataset, split_target, write_split_csv

    split_target(out, overwrite)  # before reading every image
    source = open_dataset(path)
    if source.splits:
        had = ", ".join(f"{name} {sum(n.values())}" for name, n in source.counts().items())
        print_warning(
            f"{path} already has splits ({had}); they are replaced by a new one. To keep a given test set (e.g. "
            "MVTec's test/ folders), leave it unsplit: training carves its own validation images"
        )
    ds = split_dataset(source, val=val, test=test, seed=seed)
    written = write_split_csv(ds, out, overwrite=overwrite)
    counts = ds.counts()
    if as_json:
        print_json({"csv": str(written), "counts": counts})
        return
    for split in ("train", "val", "test"):
        total = sum(counts.get(split, {}).values())
        console.print(f"{split:5s} {total:6d}  " + ", ".join(f"{k} {v}" for k, v in counts.get(split, {}).items()))
    console.print(f"wrote {written}")


@data_app.command("synth")
def synth_cmd(
    out: Path = typer.Argument(..., help="Folder to create."),
    kind: str = typer.Option("surface", help="What to generate (surface)."),
    n: int = typer.Option(200, help="Number of images."),
    size: int = typer.Option(128, help="Image side in pixels."),
    seed: int = typer.Option(0, help="Random seed (same seed, same images)."),
    layout: str = typer.Option("classes", help="classes | segmentation | mvtec | boxes (labels.csv with boxes)."),
    color: str = typer.Option("mixed", help="grey | color | mixed."),
    overwrite: bool = typer.Option(False, help="Write into a non-empty folder."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Generate inspekt's synthetic industrial surfaces (ok, pore, lop, scratch) with exact masks."""
    from inspekt.data.synth import write_dataset

    with progress_bar("generating images", n) as advance:
        summary = write_dataset(
            out,
            kind=kind,
            n=n,
            size=size,
            seed=seed,
            layout=layout,
            color=color,
            overwrite=overwrite,
            progress=lambda _: advance(),
        )
    if as_json:
        print_json(
            {
                "root": str(summary.root),
                "layout": summary.layout,
                "counts": summary.counts,
                "n_images": summary.n_images,
                "seconds": summary.seconds,
            }
        )
        return
    console.print(f"wrote {summary.n_images} images to {summary.root} ({summary.layout}) in {summary.seconds:.2f} s")
    console.print(", ".join(f"{k} {v}" for k, v in summary.counts.items()))


@data_app.command("import")
def import_cmd(
    source: Path = typer.Argument(
        ..., help="Annotation file (COCO / Label Studio .json, CVAT .xml) or folder (VOC, YOLO)."
    ),
    fmt: str = typer.Option("auto", "--format", help="auto | coco | yolo | voc | cvat | labelstudio."),
    out: Path = typer.Option(..., "--out", help="Folder to write labels.csv and masks/ into."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Read a labelling tool's annotations into an inspekt CSV dataset; bad entries are reported and skipped."""
    from inspekt.cli.common import showing_progress
    from inspekt.data.formats import read_annotations
    from inspekt.data.formats.export import write_csv_dataset

    with showing_progress():
        found = read_annotations(source, fmt)
    written = write_csv_dataset(found, out)
    summary = {
        "csv": str(written),
        "format": found.format,
        "images": len(found.samples),
        "masks": sum(s.mask is not None for s in found.samples),
        "boxes": sum(len(s.boxes or ()) for s in found.samples),
        "mask_values": found.mask_values,
        "problems": [{"path": p.path, "reason": p.reason} for p in found.problems],
    }
    if as_json:
        print_json(summary)
        return
    console.print(
        f"{found.format}: {summary['images']} images, {summary['masks']} masks, {summary['boxes']} boxes -> {written}",
        highlight=False,
    )
    if found.mask_values:
        values = " ".join(f"mask_values.{v}={name}" for v, name in found.mask_values.items())
        console.print(f"mask classes (train with masks=values to keep them apart): {values}", highlight=False)
    _section("problems (entries skipped or clipped)", list(found.problems))


@data_app.command("export")
def export_cmd(
    path: Path = typer.Argument(..., help="Dataset folder, CSV or annotation file."),
    fmt: str = typer.Option(..., "--format", help="coco | yolo | labelstudio."),
    out: Path = typer.Option(..., "--out", help="Folder to write into (YOLO copies the images there)."),
) -> None:
    """Write a dataset's labels, masks and boxes for a labelling tool (masks: one region per object)."""
    from inspekt.cli.common import showing_progress
    from inspekt.data import open_dataset
    from inspekt.data.formats.export import export_dataset

    with showing_progress():
        written = export_dataset(open_dataset(path), fmt, out)
    print(written)


@data_app.command("issues")
def issues_cmd(
    path: Path = typer.Argument(..., help="Dataset folder or CSV."),
    model: Path = typer.Option(
        None, "--model", help="Judge with this classify/segment bundle (default: cross-validate)."
    ),
    html: Path = typer.Option(None, "--html", help="Write a self-contained HTML report with thumbnails."),
    csv: Path = typer.Option(None, "--csv", help="Write the ranked issues as CSV (rank,path,split,kind,score,...)."),
    folds: int = typer.Option(4, "--folds", help="Cross-validation folds (models trained) without --model."),
    task: str = typer.Option(None, "--task", help="classify (labels) or segment (masks); default: labels if any."),
    seed: int = typer.Option(0, help="Seed of the folds and their training."),
    top: int = typer.Option(20, min=0, help="Issues listed on the terminal (0: none, the counts only)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    overrides: list[str] = typer.Argument(None, help="key=value changes to the folds' recipe, e.g. epochs=20."),
) -> None:
    """Suspect labels and masks, duplicates, outliers and split gaps, in one ranking (most suspect first)."""
    from inspekt.curate import find_issues
    from inspekt.curate.issues import write_issues_csv
    from inspekt.curate.report import write_html
    from inspekt.data import open_dataset
    from inspekt.io import output_file

    targets = [
        output_file(f, name, option=o)
        for f, name, o in ((html, "issues.html", "--html"), (csv, "issues.csv", "--csv"))
        if f
    ]
    with showing_progress():
        ds = open_dataset(path)
        report = find_issues(ds, model, task=task, folds=folds, overrides=overrides or [], seed=seed)
        written = [write_html(report, html, {str(s.path): str(s.mask) for s in ds.samples if s.mask})] if html else []
    written += [write_issues_csv(report.issues, csv)] if csv else []
    if as_json:
        print_json(report.to_dict() | {"written": [str(w) for w in written]})
        return
    _render_issues(report, top)
    for target in written or targets:
        console.print(f"wrote {target}")


def _render_issues(report, top: int) -> None:
    counts = ", ".join(f"{n} {kind}" for kind, n in report.counts().items() if n) or "no issues"
    console.print(f"[bold]{report.root}[/]: {report.n_images} images, judged by {report.model}", highlight=False)
    table = Table("rank", "kind", "score", title=f"issues: {counts}")
    table.add_column("path", overflow="fold")
    table.add_column("why")
    for issue in report.issues[:top]:
        table.add_row(str(issue.rank), issue.kind, f"{issue.score:.3f}", issue.path, issue.detail)
    console.print(table)
    if len(report.issues) > top:
        console.print(f"... and {len(report.issues) - top} more (--csv, --html or --json)")
    for skipped in report.skipped:
        console.print(f"[yellow]skipped {skipped.path}: {skipped.reason}[/]", highlight=False)
    console.print(f"[dim]{report.seconds:.0f} s[/]")
