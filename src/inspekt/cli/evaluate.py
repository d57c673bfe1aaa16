"""``inspekt eval`` and ``inspekt runs compare``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import box
from rich.table import Column, Table

from inspekt.cli import app
from inspekt.cli.common import console, err_console, print_json, progress_bar

runs_app = typer.Typer(help="Training run folders: inspekt runs compare RUN RUN ...", no_args_is_help=True)
app.add_typer(runs_app, name="runs")


def _score(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _print_summary(result) -> None:
    """Headline metrics, the per-class table and the confusion matrix (Rich)."""
    m = result.metrics
    console.print(
        f"[bold]{result.bundle}[/] on {result.data} (split {result.split}): {m['n']} images, "
        f"{len(result.skipped)} skipped",
        highlight=False,
    )
    if result.split == "all":
        console.print("note: the dataset has no test or val split, so these images may include training images")
    headline = Table("metric", Column("value", justify="right"), title="metrics")
    rows = [
        ("accuracy", m["accuracy"]),
        ("balanced accuracy", m["balanced_accuracy"]),
        ("macro F1", m["macro_f1"]),
        ("weighted F1", m["weighted_f1"]),
        ("ROC-AUC", m["roc_auc"]),
        ("PR-AUC", m["pr_auc"]),
        ("ECE (top-1)", m["ece"]),
    ]
    if result.positive is not None:
        decision = "argmax" if result.threshold is None else f"{result.positive} if p >= {result.threshold:g}"
        rows.append(("decision", decision))
    for name, value in rows:
        headline.add_row(name, value if isinstance(value, str) else _score(value))
    per_class = Table(
        "class", *(Column(h, justify="right") for h in ("precision", "recall", "F1", "support")), title="per class"
    )
    for row in m["per_class"]:
        per_class.add_row(
            row["class"], _score(row["precision"]), _score(row["recall"]), _score(row["f1"]), str(row["support"])
        )
    confusion = Table(
        "true \\ predicted",
        *(Column(c, justify="right") for c in result.classes),
        title="confusion matrix (rows = true)",
    )
    for name, counts in zip(result.classes, m["confusion"]):
        confusion.add_row(name, *(str(c) for c in counts))
    for table in (headline, per_class, confusion):
        console.print(table)


def _print_anomaly_summary(result) -> None:
    """Headline anomaly metrics (Rich)."""
    m = result.metrics
    n_anomalous = m["tp"] + m["fn"]
    console.print(
        f"[bold]{result.bundle}[/] on {result.data} (split {result.split}): {len(result.rows)} images "
        f"({n_anomalous} anomalous, normal class {result.normal}), {len(result.skipped)} skipped",
        highlight=False,
    )
    if result.split == "all":
        console.print("note: the dataset has no test or val split, so these images may include training images")
    headline = Table("metric", Column("value", justify="right"), title="metrics")
    for name, key in (
        ("image AUROC", "image_auroc"),
        ("image AUPR", "image_aupr"),
        ("F1 at the threshold", "f1"),
        ("precision", "precision"),
        ("recall", "recall"),
        ("accuracy", "accuracy"),
        ("pixel AUROC", "pixel_auroc"),
        ("AUPRO (FPR <= 0.3)", "aupro"),
    ):
        headline.add_row(name, _score(m[key]))
    headline.add_row("confusion", f"TP {m['tp']}  FP {m['fp']}  TN {m['tn']}  FN {m['fn']}")
    console.print(headline)


def _print_segment_summary(result) -> None:
    """Headline segmentation metrics and the per-class table (Rich)."""
    m = result.metrics
    console.print(
        f"[bold]{result.bundle}[/] on {result.data} (split {result.split}): {m['n_images']} images "
        f"({m['n_defective']} with defects), {len(result.skipped)} skipped",
        highlight=False,
    )
    if result.split == "all":
        console.print("note: the dataset has no test or val split, so these images may include training images")
    post = result.postprocess
    headline = Table("metric", Column("value", justify="right"), title="metrics (pixels at the original size)")
    for name, value in (
        ("mean IoU (defect classes)", m["iou"]),
        ("mean Dice", m["dice"]),
        ("defect IoU (any class)", m["defect_iou"]),
        ("per-image IoU", m["per_image_iou"]),
        ("pixel precision", m["pixel_precision"]),
        ("pixel recall", m["pixel_recall"]),
        ("image AUROC (max probability)", m["image_auroc"]),
        ("image precision", m["image_precision"]),
        ("image recall", m["image_recall"]),
        ("image F1", m["image_f1"]),
    ):
        headline.add_row(name, _score(value))
    headline.add_row(
        "post-processing",
        f"p >= {post.get('threshold')}, min area {post.get('min_area')} px, kernel {post.get('kernel')} px",
    )
    headline.add_row("ms / image", _score(result.to_dict()["ms_per_image"], 1))
    per_class = Table(
        "class",
        *(Column(h, justify="right") for h in ("IoU", "Dice", "precision", "recall", "pixels")),
        title="per class",
    )
    for row in m["per_class"]:
        per_class.add_row(
            row["class"],
            _score(row["iou"]),
            _score(row["dice"]),
            _score(row["precision"]),
            _score(row["recall"]),
            str(row["pixels"]),
        )
    for table in (headline, per_class):
        console.print(table)


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
    """Evaluate a classifier (labels) or segmentation model (masks); bad files are reported and skipped."""
    from inspekt.anomaly_evaluation import choose_anomaly_threshold
    from inspekt.bundle import open_bundle
    from inspekt.data import open_dataset
    from inspekt.errors import InspektError
    from inspekt.evaluation import (
        BEST_F1,
        binary_positive,
        choose_threshold,
        evaluate,
        parse_threshold_choice,
        save_threshold,
        select_split,
        write_csv,
        write_json,
    )
    from inspekt.io import BatchReport

    bundle = open_bundle(model)
    task = bundle.card.task
    segment = task == "segment"
    if set_threshold is not None:  # refuse before predicting anything
        choice = parse_threshold_choice(set_threshold)
        if segment and choice == BEST_F1:
            raise InspektError(
                "--set-threshold best-f1 applies to binary classifiers and anomaly models; give "
                "segmentation models a defect probability, e.g. --set-threshold 0.4"
            )
        if task == "classify":
            binary_positive(bundle)
    dataset, split = select_split(open_dataset(data), split)
    to_stdout = json_file == Path("-")
    with progress_bar("evaluating", len(dataset), enabled=not to_stdout) as advance:
        result = evaluate(bundle, dataset, split=split, backend=backend, batch_size=batch, progress=advance)
    if set_threshold is not None and task != "classify":
        value = choose_anomaly_threshold(result, choice) if task == "anomaly" else float(choice)
        save_threshold(bundle, value)
        what = "normalised anomaly-score" if task == "anomaly" else "defect"
        err_console.print(
            f"stored {what} threshold {value:g} in {bundle.path}; run eval again to score it", highlight=False
        )
    elif set_threshold is not None:
        threshold = choose_threshold(result, set_threshold)
        result = result.with_threshold(threshold)
        save_threshold(bundle, threshold)
        err_console.print(f"stored threshold {result.positive} >= {threshold:g} in {bundle.path}", highlight=False)
    written = [write_csv(result, csv_file)] if csv_file else []
    if plots:
        written += _write_plots(result, bundle, dataset, plots, backend)
    if to_stdout:
        print_json(result.to_dict())
    else:
        written += [write_json(result, json_file)] if json_file else []
        {"segment": _print_segment_summary, "anomaly": _print_anomaly_summary}.get(task, _print_summary)(result)
    err_console.print(BatchReport(len(result.rows), result.skipped).summary(), highlight=False)
    for path in written:
        err_console.print(f"wrote {path}", highlight=False)


def _write_plots(result, bundle, dataset, plots: Path, backend: str) -> list:
    """The task's figures in ``plots``; a URL folder is written locally first, then uploaded."""
    from inspekt.storage import as_path, rebase, staged_folder

    task = bundle.card.task
    with staged_folder(plots) as folder:
        if task == "segment":
            from inspekt.predictor import Predictor
            from inspekt.seg_evaluation import write_worst_overlays

            overlays = write_worst_overlays(result, Predictor.load(bundle, backend=backend), dataset, folder)
            err_console.print(
                f"wrote {len(overlays)} overlays of the worst images in {as_path(plots)}", highlight=False
            )
            return []
        if task == "anomaly":
            from inspekt.anomaly_evaluation import write_plots
            from inspekt.predictor import Predictor

            written = write_plots(result, Predictor.load(bundle, backend=backend), folder)
        else:
            from inspekt.plots import plot_evaluation

            written = plot_evaluation(result, folder)
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
    from inspekt.plots import plot_runs
    from inspekt.runs import read_run

    summaries = [read_run(run) for run in runs]
    names = _run_names([s.run for s in summaries])
    if plot:
        plot_runs({name: s.history for name, s in zip(names, summaries)}, plot)
    if as_json:
        print_json([s.to_dict() for s in summaries])
        return
    table = Table(
        title="runs: validation macro-F1, accuracy, ROC-AUC at the best macro-F1 epoch",
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
        best = f"{_score(s.best_val_macro_f1)} ({s.best_epoch})" if s.best_epoch is not None else "-"
        table.add_row(
            name,
            s.model,
            "x".join(map(str, s.imgsz)),
            epochs,
            best,
            _score(s.val_accuracy),
            _score(s.val_roc_auc),
            f"{s.train_seconds:.1f}",
            f"{s.bundle_bytes / 1e6:.2f}",
        )
    console.print(table)
    if plot:
        err_console.print(f"wrote {plot}", highlight=False)
