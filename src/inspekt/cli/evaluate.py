"""``inspekt eval`` and ``inspekt runs compare``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Column, Table

from inspekt.cli import app
from inspekt.cli.common import console, err_console, print_json, progress_bar, warn_of_caveats
from inspekt.results import BatchReport
from inspekt.tasks.base import fmt
from inspekt.tasks.shared import BEST_F1

runs_app = typer.Typer(help="Training run folders: inspekt runs compare RUN RUN ...", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def _print_summary(result, task) -> None:
    """The task's summary tables of an evaluation (Rich)."""
    tables = task.summary(result)
    head = tables[0].note if tables else ""
    console.print(f"[bold]{result.bundle}[/] on {result.data} (split {result.split}): {head}", highlight=False)
    from inspekt.engine.evaluator import training_images_note

    for note in (training_images_note(result.split, result.metrics), task.threshold_note(result)):
        if note:
            console.print(f"note: {note}", highlight=False)
    for table in tables:
        shown = Table(table.columns[0], *(Column(c, justify="right") for c in table.columns[1:]), title=table.title)
        for row in table.rows:
            shown.add_row(*row)
        console.print(shown)


@app.command("eval")
def eval_command(
    model: Path = typer.Argument(..., help="Bundle folder, .inspekt file or run folder."),
    data: str = typer.Option(..., "--data", help="Labelled dataset folder or CSV."),
    split: str = typer.Option(
        None, "--split", help="Split to evaluate: train, val, test or all (default: test, else val, else all)."
    ),
    json_file: Path = typer.Option(
        None,
        "--json",
        help="Write metrics, threshold sweep and skipped files as JSON ('-': print it instead of the summary).",
    ),
    csv_file: Path = typer.Option(None, "--csv", help="Write one row per image (path, true, predicted, scores)."),
    plots: Path = typer.Option(
        None,
        "--plots",
        help="Folder for confusion matrices, threshold sweep and the "
        "Grad-CAM gallery of errors (segmentation: overlays of the "
        "worst images, truth outlined in green).",
    ),
    set_threshold: str = typer.Option(
        None,
        "--set-threshold",
        help="Binary models: best-f1 or a probability; "
        "segmentation: the defect probability; stored "
        "in the bundle's card.",
    ),
    backend: str = typer.Option("onnx", help="onnx | torch."),
    batch: int = typer.Option(16, min=1, help="Images per model call."),
) -> None:
    """Evaluate a model on annotated images (labels, masks or boxes); bad files are reported and skipped."""
    from inspekt.data import open_dataset
    from inspekt.engine.evaluator import evaluate, save_threshold, select_split, write_csv, write_json
    from inspekt.engine.predictor import Predictor
    from inspekt.io import output_file, output_folder

    to_stdout = json_file == Path("-")
    # Every output is checked before predicting: a path that cannot be written fails now, not at the end.
    json_file = output_file(json_file, "metrics.json", option="--json") if json_file and not to_stdout else json_file
    csv_file = output_file(csv_file, "rows.csv", option="--csv") if csv_file else None
    plots = output_folder(plots, option="--plots") if plots else None
    predictor = Predictor.load(model, backend=backend, batch_size=batch)
    warn_of_caveats(predictor)
    bundle, task = predictor.bundle, predictor.task
    if set_threshold is not None:  # refuse before predicting anything; "BEST-F1" is best-f1 from here on
        set_threshold = task.check_threshold_choice(bundle.card, set_threshold)
    dataset, split = select_split(open_dataset(data), split)
    if set_threshold not in (None, BEST_F1):  # a number: scored at it, and stored once the evaluation succeeded
        predictor = predictor.with_threshold(float(set_threshold))
    with progress_bar("evaluating", len(dataset)) as advance:
        result = evaluate(predictor, dataset, split=split, progress=advance)
    if set_threshold is not None:
        value = task.choose_threshold(result, set_threshold)
        save_threshold(bundle, value)
        result = task.rescore(result, value) if set_threshold == BEST_F1 else result
        err_console.print(f"stored {task.thresholds} threshold {value:g} in {bundle.path}", highlight=False)
        if set_threshold == BEST_F1:
            err_console.print(
                f"note: it was chosen on these {len(result.rows)} images (split {split}), so the scores below flatter "
                "it; judge it on images it was not chosen on (another split, new images)",
                highlight=False,
            )
    written = [write_csv(result, csv_file)] if csv_file else []
    if plots:
        written += _write_plots(result, predictor, dataset, plots)
    if to_stdout:
        print_json(result.to_dict())
    else:
        written += [write_json(result, json_file)] if json_file else []
        _print_summary(result, task)
    err_console.print(BatchReport(len(result.rows), result.skipped).summary(), highlight=False)
    for path in written:
        err_console.print(f"wrote {path}", highlight=False)


def _write_plots(result, predictor, dataset, plots: Path) -> list:
    """The task's figures in ``plots``; a URL folder is written locally first, then uploaded."""
    from inspekt.storage import rebase, staged_folder

    with staged_folder(plots) as folder:
        written = predictor.task.write_plots(result, predictor, dataset, folder)
    return [rebase(path, folder, plots) for path in written]


def _run_names(runs: list[str]) -> list[str]:
    """The shortest path endings that tell the runs apart: ``exp``, or ``a/exp`` and ``b/exp``."""
    parts = [Path(run).resolve().parts for run in runs]
    for depth in range(1, max(map(len, parts)) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(run) for run in runs]  # the same folder given twice


@runs_app.command("compare")
def compare(
    runs: list[Path] = typer.Argument(..., help="Run folders (runs/<task>/<name>)."),
    plot: Path = typer.Option(None, "--plot", help="Write overlaid training curves to this PNG."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Compare training runs: model, input size, epochs, best validation scores, time, bundle size."""
    from inspekt.engine.plots import plot_runs
    from inspekt.engine.runs import config_differences, read_run
    from inspekt.io import output_file

    plot = output_file(plot, "curves.png", option="--plot") if plot else None
    summaries = [read_run(run) for run in runs]
    names = _run_names([s.run for s in summaries])
    if plot:
        plot_runs({name: s.history for name, s in zip(names, summaries)}, plot)
    differences = config_differences(summaries)
    if as_json:
        print_json(
            [
                s.to_dict() | {"config_differences": {k: v[i] for k, v in differences.items()}}
                for i, s in enumerate(summaries)
            ]
        )
        return
    table = Table(
        title="runs: validation macro-F1, accuracy, ROC-AUC at the epoch each bundle holds",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("run", overflow="fold", min_width=12)
    table.add_column("model", overflow="fold", min_width=8)
    for header in ("imgsz", "epochs", "F1 (epoch)", "acc", "AUC", "time s", "MB"):
        table.add_column(header, justify="right", no_wrap=True)
    for name, s in zip(names, summaries):
        epochs = f"{s.epochs_run}/{s.epochs_planned}" if s.epochs_planned else str(s.epochs_run)
        best = f"{fmt(s.best_val_macro_f1)} ({s.best_epoch})" if s.best_epoch is not None else "-"
        table.add_row(
            name,
            s.model,
            "x".join(map(str, s.imgsz)),
            epochs,
            best,
            fmt(s.val_accuracy),
            fmt(s.val_roc_auc),
            f"{s.train_seconds:.1f}",
            f"{s.bundle_bytes / 1e6:.2f}",
        )
    console.print(table)
    _print_differences(names, differences)
    if plot:
        err_console.print(f"wrote {plot}", highlight=False)


def _print_differences(names: list[str], differences: dict[str, list]) -> None:
    """The training settings that differ between the runs (what explains their figures), one row each."""
    if not differences:
        console.print("the runs' training settings (config.yaml) are the same", highlight=False)
        return
    table = Table("setting", *(Column(n, overflow="fold") for n in names), title="settings that differ")
    for key, values in differences.items():
        table.add_row(key, *("-" if v is None else str(v) for v in values))
    console.print(table)
