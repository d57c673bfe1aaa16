"""``inspekt drift REFERENCE CURRENT`` and ``inspekt profile SOURCE``."""

from __future__ import annotations

import contextlib
from contextlib import contextmanager
from pathlib import Path

import typer

from inspekt import progress
from inspekt.cli import app
from inspekt.cli.common import DASK_HELP, console, err_console, maybe_cluster, print_json, showing_progress


@contextmanager
def _progress():
    """Yields ``(on_start, advance)`` callbacks that show one progress step per profiled side on stderr
    (bars on a terminal, plain lines in logs and pipes). The steps live on an ExitStack: a new side ends
    the last one, and an error ends the open one as failed (it does not say "done")."""
    advance: list = []  # the open step's advance

    with showing_progress(), contextlib.ExitStack() as steps:

        def on_start(side: str, n: int) -> None:
            steps.close()
            advance[:] = [steps.enter_context(progress.step(f"profiling {side}", n))]

        yield on_start, lambda n: advance[0](n)


@app.command()
def drift(
    reference: str = typer.Argument(..., help="Folder, dataset, CSV, saved profile (.json) or model bundle."),
    current: str = typer.Argument(..., help="Folder, dataset, CSV or saved profile (.json)."),
    json_out: Path = typer.Option(None, "--json", help="Write the JSON report (schema inspekt.drift/1) here."),
    html_out: Path = typer.Option(None, "--html", help="Write the self-contained HTML report here."),
    checks: str = typer.Option(
        "properties,pixels,domain,predictions,embeddings",
        "--checks",
        help="Comma-separated checks: properties, pixels, domain, predictions, embeddings.",
    ),
    alpha: float = typer.Option(0.05, "--alpha", help="False-alarm rate for the whole comparison."),
    min_effect: float = typer.Option(0.1, "--min-effect", help="Smallest property effect (normalised Wasserstein)."),
    kl_threshold: float = typer.Option(
        None, "--kl-threshold", help="Also report the fixed rule KL(ref||cur) > this for pixel histograms."
    ),
    permutations: int = typer.Option(1000, "--permutations", help="Relabellings per permutation test (19 to 5000)."),
    sample: int = typer.Option(None, "--sample", help="Profile a random sample of this many images per side."),
    workers: int = typer.Option(
        0,
        "--workers",
        help="Processes for profiling (0: one per core, at most 4, from 1,000 images; with --dask local: its workers).",
    ),
    dask: str = typer.Option(None, "--dask", help=DASK_HELP),
    seed: int = typer.Option(0, "--seed"),
    fail_on_drift: bool = typer.Option(False, "--fail-on-drift", help="Exit with status 3 when drift is detected."),
    as_json: bool = typer.Option(False, "--as-json", help="Print the JSON report instead of the table."),
) -> None:
    """Check whether CURRENT images differ from REFERENCE images (calibrated, with effect sizes)."""
    from inspekt.drift import check_drift
    from inspekt.drift.report import print_console, to_dict, write_html, write_json
    from inspekt.drift.types import parse_checks
    from inspekt.io import output_file

    for target, example in ((json_out, "drift.json"), (html_out, "drift.html")):
        if target:
            output_file(target, example)  # say now, not after profiling, that a report cannot be written
    with _progress() as (on_start, advance):
        result = check_drift(
            reference,
            current,
            workers=workers,
            sample=sample,
            progress=advance,
            on_start=on_start,
            dask=dask,
            checks=parse_checks(checks),
            alpha=alpha,
            min_effect=min_effect,
            kl_threshold=kl_threshold,
            permutations=permutations,
            seed=seed,
        )
    if as_json:
        print_json(to_dict(result))
    else:
        print_console(result, console)
    for target, write in ((json_out, write_json), (html_out, write_html)):
        if target:
            err_console.print(f"wrote {write(result, target)}", highlight=False)
    if fail_on_drift and result.drift:
        raise typer.Exit(3)


@app.command()
def profile(
    source: str = typer.Argument(..., help="Folder, dataset or CSV of images."),
    out: Path = typer.Option(..., "--out", "-o", help="Where to write the profile (.json)."),
    sample: int = typer.Option(None, "--sample", help="Profile a random sample of this many images."),
    workers: int = typer.Option(
        0,
        "--workers",
        help="Processes for profiling (0: one per core, at most 4, from 1,000 images; with --dask local: its workers).",
    ),
    dask: str = typer.Option(None, "--dask", help=DASK_HELP),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Save the drift profile of a set of images, to use later as REFERENCE or CURRENT of `inspekt drift`."""
    from inspekt.drift import load_profile
    from inspekt.io import output_file

    output_file(out, "profile.json")
    with _progress() as (on_start, advance), maybe_cluster(dask, workers) as client:
        result = load_profile(
            source,
            workers=1 if client else workers,
            sample=sample,
            seed=seed,
            progress=advance,
            on_start=on_start and (lambda n: on_start("images", n)),
            client=client,
        )
    path = result.save(out)
    console.print(f"profiled {len(result)} images, skipped {len(result.skipped)}; wrote {path}", highlight=False)
    for s in result.skipped[:10]:
        console.print(f"  {s.path}: {s.reason}", highlight=False, markup=False)
