"""``inspekt predict``."""

from __future__ import annotations

import contextlib
import glob
from pathlib import Path

import typer
from rich.table import Column, Table

from inspekt import storage
from inspekt.bundle import model_version
from inspekt.cli import app
from inspekt.cli.common import (
    DASK_HELP,
    console,
    err_console,
    file_cells,
    file_columns,
    maybe_cluster,
    print_json,
    progress_bar,
    unique_name,
    warn_of_caveats,
)
from inspekt.errors import InspektError
from inspekt.results import BatchReport
from inspekt.tasks import thresholds_text

PREANNOTATIONS = ("coco", "labelstudio")  # --format: what labelling tools import (data.formats.export writes them)


def _csv_sources(path: Path) -> list[str]:
    """Image paths listed in a CSV: the ``path``/``image``/``file`` column (else the first), relative to the CSV."""
    import csv

    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = list(csv.DictReader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InspektError(f"{path}: not a readable CSV file ({exc})") from exc
    if not rows:
        raise InspektError(f"{path}: the CSV lists no images (needs a header row and one row per image)")
    columns = list(rows[0])
    column = next((c for c in columns if c.strip().lower() in ("path", "image", "file", "filename")), columns[0])
    return [str(path.parent / row[column]) for row in rows if row.get(column)]


def expand_sources(sources: list[str]) -> list[str]:
    """Files as given, folders as their images (recursively), glob patterns expanded, CSVs as their paths."""
    from inspekt.io import list_images

    expanded: list[str] = []
    for source in sources:
        path = storage.as_path(source)
        if path.is_dir():
            expanded.extend(str(p) for p in list_images(path))
        elif path.suffix.lower() == ".csv" and path.is_file():
            expanded.extend(_csv_sources(path))
        elif not path.exists() and glob.has_magic(source):
            expanded.extend(storage.glob_paths(source))
        else:
            remote = isinstance(path, storage.RemotePath)
            if remote and not path.exists() and "no such bucket" in (reason := path.missing_reason()):
                raise InspektError(f"{source}: {reason}")  # nothing below a missing bucket can be read
            expanded.append(source)  # a missing file is reported as skipped, not fatal
    return expanded


def _ood_cells(r, checked: bool, machine: bool) -> dict[str, str]:
    """The out-of-distribution columns (only when the bundle can check images: the same columns on every run)."""
    if not checked:
        return {}
    if machine:
        ood = r.ood or {"unlike_training": False}  # checked (its size) and not flagged: no distance to give
        return {"ood_score": str(ood.get("score", "")), "unlike_training": str(ood["unlike_training"])}
    return {"unlike training?": r.ood_note() or (f"no ({r.ood['score']:.2f})" if r.ood else "no")}


class _Printer:
    """The predictions on stdout as they come: JSON lines and CSV rows are printed chunk by chunk (a
    consumer sees them at once, and an interrupted run keeps what it printed); a table and the
    pre-annotation documents need every result, so they are printed by ``finish``. Rows carry the
    task's columns and, when the bundle can tell, whether each image is unlike the training images;
    JSON and CSV name the model on every row (the summary line names it for the others)."""

    def __init__(self, predictor, form: str, topk: int | None):
        self.predictor, self.form, self.topk = predictor, form, topk
        self.version = model_version(predictor.bundle)
        self.checked = predictor.novelty is not None or predictor.sizes is not None
        self.writer = None

    def add(self, chunk: list) -> None:
        import csv
        import sys

        if self.form == "json":
            for r in chunk:
                print_json(r.to_dict(self.topk) | {"model": self.version})
        elif self.form == "csv" and chunk:
            rows = [self._csv_row(r) for r in chunk]
            if self.writer is None:
                self.writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]))
                self.writer.writeheader()
            self.writer.writerows(rows)
        sys.stdout.flush()

    def _csv_row(self, r) -> dict[str, str]:
        return (
            {"path": r.source}
            | self.predictor.task.cells(r, self.predictor.card, self.topk, True)
            | _ood_cells(r, self.checked, True)
            | {"time_ms": f"{r.time_ms:.2f}", "batch_images": str(r.batch_images), "model": self.version}
        )

    def finish(self, results: list) -> None:
        if self.form in PREANNOTATIONS:
            _print_preannotations(results, self.predictor, self.version, self.form)
        elif self.form == "csv" and self.writer is None:  # nothing could be read: the header alone
            print("path,label,score,time_ms")
        elif self.form == "table" and results:
            self._table(results)

    def _table(self, results: list) -> None:
        task, card, checked = self.predictor.task, self.predictor.card, self.checked
        extra = list(_ood_cells(results[0], checked, False))
        table = Table(
            *file_columns(),
            *task.cells(results[0], card, self.topk, False),
            *extra,
            Column("ms (batch avg)", no_wrap=True),
        )
        for r in results:
            cells = task.cells(r, card, self.topk, False) | _ood_cells(r, checked, False)
            table.add_row(*file_cells(r.source), *cells.values(), f"{r.time_ms:.1f}")
        console.print(table)


def _save_visuals(
    results: list, save_dir: Path | storage.RemotePath, explainer, used: set[str], n_classes: int, enhance
) -> None:
    """An annotated copy of every image (with its Grad-CAM overlay when ``explainer`` is given;
    segmentation and anomaly: the mask or heat-map overlay, the mask itself as ``<name>_mask.png`` and
    any reconstruction as ``<name>_reconstruction.png``), enhanced as the
    model saw it; ``used`` holds the names written so far, so equal stems from different folders
    never collide."""
    from inspekt.draw import banner
    from inspekt.io import load_image, save_image

    for r in results:
        image = load_image(r.source, mode="keep")
        image = enhance(image) if enhance else image
        if r.boxes is not None:  # boxes drawn in their class colours, the verdict and counts on top
            name = unique_name(r.source, "boxes", used)
            r.extra["saved"] = str(save_image(save_dir / name, banner(r.overlay(image), r.headline())))
            continue
        if r.mask is not None:
            name = unique_name(r.source, "overlay", used)
            text = f"{r.extra['verdict']} {r.score:.2f} ({len(r.extra['components'])} regions)"
            r.extra["saved"] = str(save_image(save_dir / name, banner(r.overlay(image), text)))
            scaled = (r.mask * (255 // max(1, n_classes - 1))).astype("uint8")  # binary: 0 / 255
            r.extra["saved_mask"] = str(save_image(save_dir / f"{Path(name).stem}_mask.png", scaled))
            if r.reconstruction is not None:
                recon = save_dir / f"{Path(name).stem}_reconstruction.png"
                r.extra["saved_reconstruction"] = str(save_image(recon, r.reconstruction))
            continue
        base = explainer.explain(image, target=r.label, source=r.source).overlay if explainer else image
        name = unique_name(r.source, "gradcam" if explainer else "pred", used)
        r.extra["saved"] = str(save_image(save_dir / name, banner(base, f"{r.label} {r.score:.2f}")))


def _chunks(predictor, files: list[str], batch: int, pipeline, report: BatchReport):
    """``(predictions, files in the chunk)`` per ``batch`` files, in this process."""
    for i in range(0, len(files), batch):
        chunk = files[i : i + batch]
        yield predictor.predict(chunk, report=report, enhance=pipeline), len(chunk)


def _print_preannotations(results: list, predictor, version: str, fmt: str) -> None:
    """The predictions as one COCO or Label Studio document on stdout, tied to the model that made them."""
    import json
    import sys

    from inspekt.data.formats.export import write_predictions
    from inspekt.results import json_safe

    doc = write_predictions(results, predictor.card.classes, fmt, version)
    json.dump(json_safe(doc), sys.stdout)
    sys.stdout.write("\n")


def _summarise(results: list, report: BatchReport, save_dir, predictor, version: str) -> None:
    """The closing lines on stderr: the model and its thresholds, counts per label, skipped files, time,
    images unlike the training ones."""
    from collections import Counter

    counts = Counter(r.label for r in results)
    boxes = Counter(box["class"] for r in results for box in r.boxes or ())
    mean_ms = sum(r.time_ms for r in results) / max(1, len(results))
    unlike = sum(bool(r.ood_note()) for r in results)
    err_console.print(
        f"{len(results)} predicted"
        + (f" ({', '.join(f'{k}: {v}' for k, v in counts.most_common())})" if counts else "")
        + f" by {version} (thresholds: {thresholds_text(predictor.card)}), "
        + (f"boxes per class: {', '.join(f'{k} {v}' for k, v in boxes.most_common())}, " if boxes else "")
        + f"{len(report.skipped)} skipped, {mean_ms:.1f} ms/image"
        + (f"; {unlike} unlike the training images (check them: the labels may be meaningless)" if unlike else "")
        + (f"; images saved in {save_dir}" if save_dir and results else ""),
        highlight=False,
    )
    if report.skipped:
        err_console.print(report.summary(), highlight=False)


@app.command()
def predict(
    bundle: str = typer.Argument(..., help="Bundle folder, .inspekt file or run folder (a path or URL)."),
    sources: list[str] = typer.Argument(..., help="Image files, folders, glob patterns or a CSV of paths."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image (JSON lines)."),
    as_csv: bool = typer.Option(False, "--csv", help="CSV on stdout: path, label, score, one column per class."),
    topk: int = typer.Option(None, "--topk", min=1, help="Show only the K most probable classes."),
    threshold: float = typer.Option(
        None,
        "--threshold",
        help="Binary models: positive-class probability to predict it; "
        "segmentation: defect probability of a pixel; anomaly: "
        "normalised score of an anomalous image (card: 0.5); detection: score of a box.",
    ),
    pixel_threshold: float = typer.Option(
        None, "--pixel-threshold", help="Anomaly: normalised map value of an anomalous pixel (card: 0.5)."
    ),
    min_area: int = typer.Option(
        None, "--min-area", help="Segmentation and anomaly: drop regions smaller than this (pixels); detection: boxes."
    ),
    save_dir: str = typer.Option(
        None,
        "--save-dir",
        help="Write an annotated copy of every image here (segmentation: mask overlay and mask PNG; detection: boxes).",
    ),
    explain: bool = typer.Option(
        False, "--explain", help="Save Grad-CAM overlays (into --save-dir, default predictions/)."
    ),
    backend: str = typer.Option("onnx", help="onnx | torch."),
    batch: int = typer.Option(16, min=1, help="Images per model call."),
    threads: int = typer.Option(None, min=1, help="Inference threads (at least 1; default: the runtime's choice)."),
    enhance: str = typer.Option(
        None,
        "--enhance",
        help='Enhancement before the model: a preset ("CLAHE + Denoise"), '
        '"clahe:clip_limit=3 + median:ksize=3", or a pipeline .json file.',
    ),
    dask: str = typer.Option(None, "--dask", help=DASK_HELP),
    fmt: str = typer.Option(
        None,
        "--format",
        help="coco | labelstudio: one JSON document of pre-annotations on stdout (classes with scores, "
        "masks as RLE, regions) for a labelling tool to import.",
    ),
) -> None:
    """Predict images with a bundle; bad files are reported and skipped, a summary ends the output."""
    from inspekt.engine.distributed import predict_on
    from inspekt.engine.predictor import Predictor
    from inspekt.enhance import Pipeline
    from inspekt.io.outputs import output_folder_for

    if sum((as_json, as_csv, fmt is not None)) > 1:
        raise InspektError("choose one of --json, --csv and --format")
    if fmt is not None and fmt not in PREANNOTATIONS:
        raise InspektError(f"--format {fmt!r}: use coco or labelstudio")
    pipeline = Pipeline.parse(enhance) if enhance else None
    wanted = save_dir or "predictions" if save_dir or explain else None
    options = {
        "backend": backend,
        "threads": threads,
        "batch_size": batch,
        "threshold": threshold,
        "min_area": min_area,
        "pixel_threshold": pixel_threshold,
    }
    # checked before the model opens; if nothing is written into it (a refusal), no empty folder stays
    with output_folder_for(wanted, option="--save-dir") if wanted else contextlib.nullcontext() as save_dir:
        predictor = Predictor.load(bundle, **options)
        warn_of_caveats(predictor)
        explainer = None
        if explain:
            from inspekt.tasks.classify.explain import Explainer

            explainer = Explainer.load(predictor.bundle)
        files, report = expand_sources(sources), BatchReport()
        if not files:
            raise InspektError(f"no images found in {', '.join(sources)}")
        printer = _Printer(predictor, fmt or ("json" if as_json else "csv" if as_csv else "table"), topk)
        results, used = [], set()
        try:
            with maybe_cluster(dask) as client, progress_bar("predicting", len(files)) as advance:
                if client:
                    chunks = predict_on(client, bundle, files, options=options, enhance=enhance, report=report)
                else:
                    chunks = _chunks(predictor, files, batch, pipeline, report)
                for chunk, n in chunks:
                    if save_dir:
                        _save_visuals(chunk, save_dir, explainer, used, len(predictor.card.classes), pipeline)
                    printer.add(chunk)
                    results.extend(chunk)
                    advance(n)
        except KeyboardInterrupt:
            printer.finish(results)  # the table or document of what was predicted (JSON and CSV are out already)
            _summarise(results, report, save_dir, predictor, printer.version)
            err_console.print(f"interrupted: {len(results)} of {len(files)} images predicted", highlight=False)
            raise typer.Exit(130) from None
        printer.finish(results)
        _summarise(results, report, save_dir, predictor, printer.version)
        if not results:
            raise InspektError(f"none of the {len(files)} file(s) could be read as an image (see the list above)")
