"""``inspekt train classify``, ``inspekt predict``, ``inspekt export``."""

from __future__ import annotations

import glob
from pathlib import Path

import typer
from rich.table import Table

from ..errors import InspektError
from . import app
from .common import console, err_console, print_json, progress_bar

train_app = typer.Typer(help="Train a model: inspekt train classify --data PATH.", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("classify")
def train_classify(
    data: str = typer.Option(..., "--data", help="Dataset folder or CSV."),
    model: str = typer.Option(None, "--model", help="Registered model name (see `inspekt models`)."),
    epochs: int = typer.Option(None, "--epochs", help="Maximum epochs."),
    imgsz: int = typer.Option(None, "--imgsz", help="Input side in pixels."),
    batch: int = typer.Option(None, "--batch", help="Batch size."),
    lr: float = typer.Option(None, "--lr", help="Learning rate."),
    seed: int = typer.Option(None, "--seed", help="Random seed."),
    out: str = typer.Option(None, "--out", help="Runs root folder (default: runs)."),
    name: str = typer.Option(None, "--name", help="Run name (default: exp, then exp2, ...)."),
    exist_ok: bool = typer.Option(None, "--exist-ok", help="Reuse the run folder if it exists."),
    config: Path = typer.Option(None, "--config", help="YAML config file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. patience=3."),
) -> None:
    """Train an image classifier; prints the bundle path."""
    from ..config import TrainConfig, build_config
    from ..train import train

    options = dict(task="classify", data=data, model=model, epochs=epochs, imgsz=imgsz, batch=batch, lr=lr,
                   seed=seed, out=out, name=name, exist_ok=exist_ok)
    cfg = build_config(TrainConfig, file=config, options=options, overrides=overrides)
    with progress_bar("training", cfg.epochs, enabled=not as_json) as advance:
        def on_epoch(row: dict) -> None:
            advance()
            if not as_json:
                err_console.print(f"epoch {row['epoch']:3d}  loss {row['train_loss']:.4f}  "
                                  f"val acc {row['val_accuracy']:.3f}  val macro-F1 {row['val_macro_f1']:.3f}")
        result = train(cfg, on_epoch=on_epoch)
    if as_json:
        print_json({"run_dir": str(result.run_dir), "bundle": str(result.bundle), "metrics": result.metrics,
                    "parity_max_abs_diff": result.parity.max_abs_diff,
                    "skipped": [vars(s) for s in result.skipped.skipped]})
        return
    if result.skipped.skipped:
        err_console.print(result.skipped.summary(), highlight=False)
    console.print(f"best: {result.metrics}  (ONNX parity max |diff| {result.parity.max_abs_diff:.2e})")
    print(result.bundle)


def expand_sources(sources: list[str]) -> list[str]:
    """Files as given, folders as their images (recursively), glob patterns expanded."""
    from ..io import list_images

    expanded: list[str] = []
    for source in sources:
        path = Path(source)
        if path.is_dir():
            expanded.extend(str(p) for p in list_images(path))
        elif not path.exists() and glob.has_magic(source):
            expanded.extend(sorted(glob.glob(source, recursive=True)))
        else:
            expanded.append(source)  # a missing file is reported as skipped, not fatal
    return expanded


@app.command()
def predict(
    bundle: Path = typer.Argument(..., help="Bundle folder, .inspekt file or run folder."),
    sources: list[str] = typer.Argument(..., help="Image files, folders or glob patterns."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image (JSON lines)."),
    backend: str = typer.Option("onnx", help="onnx | torch."),
    batch: int = typer.Option(16, min=1, help="Images per model call."),
    threads: int = typer.Option(None, help="Inference threads."),
) -> None:
    """Predict images with a bundle; bad files are reported and skipped."""
    from ..io import BatchReport
    from ..predictor import Predictor

    predictor = Predictor.load(bundle, backend=backend, threads=threads, batch_size=batch)
    files, report = expand_sources(sources), BatchReport()
    if not files:
        raise InspektError(f"no images found in {', '.join(sources)}")
    with progress_bar("predicting", len(files), enabled=not as_json) as advance:
        results = []
        for start in range(0, len(files), batch):
            chunk = files[start : start + batch]
            results.extend(predictor.predict(chunk, report=report))
            advance(len(chunk))
    if as_json:
        for r in results:
            print_json(r.to_dict())
    elif results:
        table = Table("path", "label", "score", "ms")
        for r in results:
            table.add_row(r.source, str(r.label), f"{r.score:.3f}" if r.score is not None else "", f"{r.time_ms:.1f}")
        console.print(table)
    err_console.print(report.summary(), highlight=False)
    if not results:
        raise InspektError(f"none of the {len(files)} file(s) could be read as an image (see the list above)")


@app.command()
def export(
    bundle: Path = typer.Argument(..., help="Bundle folder, .inspekt file or run folder."),
    out: Path = typer.Option(None, "--out", help="Where to write (default: BUNDLE.inspekt beside it)."),
    folder: bool = typer.Option(False, "--folder", help="Write a folder instead of a single .inspekt file."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing bundle at --out."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Re-export a bundle's ONNX graph from its weights, parity-check it and write it."""
    from ..bundle import REFERENCE, load_network, open_bundle, save_bundle

    source = open_bundle(bundle)
    target = out or source.path.with_name(source.path.name + ("-export" if folder else ""))
    extra = {REFERENCE: source.read(REFERENCE)} if source.has(REFERENCE) else None
    written, parity = save_bundle(load_network(source), source.card, target, extra_files=extra, archive=not folder,
                                  overwrite=overwrite)
    if as_json:
        print_json({"bundle": str(written), "parity_max_abs_diff": parity.max_abs_diff, "parity_inputs": parity.n_inputs})
        return
    console.print(f"ONNX parity: max |diff| {parity.max_abs_diff:.2e} on {parity.n_inputs} inputs (limit {parity.tolerance:g})")
    print(written)
