"""``inspekt data correct``: record one fix of a dataset image in its corrections.csv (the workbench's
Review page records the same rows)."""

from __future__ import annotations

from pathlib import Path

import typer

from inspekt.cli.common import console
from inspekt.cli.data import data_app
from inspekt.errors import ConfigError, InspektError, did_you_mean


def _sample(fixes, dataset, image: str):
    """The image's sample: its path relative to the dataset (as corrections.csv names it), or any path
    to the same file (absolute, or from here: as ``data issues`` and ``predict`` print them)."""
    found = next((s for s in dataset.samples if fixes.key(s.path) == Path(image).as_posix()), None)
    if found is None:  # a missing file too: its row may be what is being fixed (excluded)
        here = Path(image).resolve()
        found = next((s for s in dataset.samples if Path(s.path).resolve() == here), None)
    if found is None:
        raise InspektError(
            f"{image}: no such image in {dataset.root}; give its path relative to the dataset or any path to the file"
        )
    return found


def _check_label(label: str, corrected, new_class: bool) -> None:
    """Refuse a label that is not a class of the dataset as corrected so far (a class an earlier
    ``--new-class`` added counts), unless ``new_class``: a typo would add a class."""
    classes = sorted({s.label for s in corrected.samples if s.label is not None})
    if new_class or label in classes or not classes:
        return
    raise ConfigError(
        f"--label {label!r} is not a class of {corrected.root} ({', '.join(classes)}).{did_you_mean(label, classes)} "
        "Pass --new-class to add it as a new class"
    )


@data_app.command("correct")
def correct_cmd(
    data: str = typer.Argument(..., help="Dataset folder or CSV."),
    image: str = typer.Argument(
        ..., help="The image: relative to the dataset (as corrections.csv names it), or any path to the file."
    ),
    label: str = typer.Option(None, "--label", help="Its right label: one of the dataset's classes."),
    new_class: bool = typer.Option(False, "--new-class", help="With --label: the label is a new class (no typo)."),
    mask: Path = typer.Option(None, "--mask", help="Its right mask: an image file, non-zero = defect."),
    exclude: bool = typer.Option(None, "--exclude/--include", help="Leave it out of the dataset (or take it back)."),
    undo: bool = typer.Option(False, "--undo", help="Take back its newest fix."),
    who: str = typer.Option(None, "--who", help="Who made the fix (default: the OS user)."),
    note: str = typer.Option("", "--note", help="Why."),
    workspace: Path = typer.Option(
        None, "--workspace", help="Where to keep the fixes when the dataset's folder is read-only."
    ),
) -> None:
    """Fix one image's label or mask, or exclude it, in the dataset's corrections.csv.

    The files are never changed; every command then reads the corrected dataset.
    """
    from inspekt.data import open_dataset
    from inspekt.data.corrections import Corrections

    chosen = [
        name for name, given in (("--label", label), ("--mask", mask), ("--exclude", exclude)) if given is not None
    ]
    if len(chosen) + undo != 1:
        raise InspektError("give exactly one of --label, --mask, --exclude / --include or --undo")
    dataset = open_dataset(data, original=True)
    fixes = Corrections(dataset.root, workspace)
    sample = _sample(fixes, dataset, image)
    signed = {"who": who, "note": note}
    if undo:
        row = fixes.undo(sample, **signed)
    elif label is not None:
        _check_label(label, fixes.apply(dataset), new_class)  # these fixes, --workspace's included: no re-read
        row = fixes.set_label(sample, label, **signed)
    elif mask is not None:
        from inspekt.io import load_image

        row = fixes.set_mask(sample, load_image(mask, mode="L"), **signed)
    else:
        row = fixes.exclude(sample, exclude, **signed)
    if row is None:
        console.print(f"{image}: already so; nothing recorded", highlight=False)
        return
    console.print(f"{row.path}: {row.field} {row.old or '-'} -> {row.new or '-'} ({fixes.csv_path})", highlight=False)
