"""``inspekt train classify``, ``inspekt predict``, ``inspekt export``."""

from __future__ import annotations

import glob
from pathlib import Path

import typer
from rich.table import Table

from inspekt import storage
from inspekt.cli import app
from inspekt.cli.common import DASK_HELP, console, err_console, maybe_cluster, print_json, progress_bar, unique_name
from inspekt.errors import InspektError

train_app = typer.Typer(help="Train a model: inspekt train classify|segment|anomaly --data PATH.", no_args_is_help=True)
app.add_typer(train_app, name="train")


@train_app.command("classify")
def train_classify(
    data: str = typer.Option(None, "--data", help="Dataset folder or CSV (not needed with --resume)."),
    model: str = typer.Option(None, "--model", help="Registered model name (see `inspekt models`), or timm/<name>."),
    pretrained: str = typer.Option(None, "--pretrained", help="Starting weights: a .safetensors/.pth file, or 'timm'."),
    epochs: int = typer.Option(None, "--epochs", help="Maximum epochs."),
    imgsz: int = typer.Option(None, "--imgsz", help="Input side in pixels."),
    batch: int = typer.Option(None, "--batch", help="Batch size."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate."),
    augment: str = typer.Option(
        None, "--augment", help="none | light | default | strong | an albumentations YAML file."
    ),
    loss: str = typer.Option(None, "--loss", help="ce | bce | focal."),
    class_weights: str = typer.Option(None, "--class-weights", help="none | auto (inverse frequency)."),
    sampler: str = typer.Option(None, "--sampler", help="shuffle | balanced (oversample rare classes)."),
    metric: str = typer.Option(
        None, "--metric", help="auto | macro_f1 | accuracy | balanced_accuracy | roc_auc | val_loss."
    ),
    seed: int = typer.Option(None, "--seed", help="Random seed."),
    out: str = typer.Option(None, "--out", help="Runs root folder (default: runs)."),
    name: str = typer.Option(None, "--name", help="Run name (default: exp, then exp2, ...)."),
    exist_ok: bool = typer.Option(None, "--exist-ok", help="Reuse the run folder if it exists."),
    config: Path = typer.Option(None, "--config", help="YAML config file."),
    resume: Path = typer.Option(None, "--resume", help="Continue an interrupted run folder from its last epoch."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. patience=3 clahe=2."),
) -> None:
    """Train an image classifier; prints the bundle path. Ctrl-C keeps the best model so far."""
    options = dict(
        task="classify",
        data=data,
        model=model,
        pretrained=pretrained,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        lr=lr,
        augment=augment,
        loss=loss,
        class_weights=class_weights,
        sampler=sampler,
        metric=metric,
        seed=seed,
        out=out,
        name=name,
        exist_ok=exist_ok,
    )
    _train("classify", options, config, overrides, resume, as_json)


@train_app.command("segment")
def train_segment(
    data: str = typer.Option(
        None,
        "--data",
        help="Dataset with masks: images/ + masks/, <stem>_mask.png, MVTec, "
        "or a CSV with a mask column (not needed with --resume).",
    ),
    model: str = typer.Option(
        None,
        "--model",
        help="tiny_unet (default), unet, unetplusplus, fpn, deeplabv3plus, "
        "linknet (see `inspekt models --task segment`).",
    ),
    encoder: str = typer.Option(None, "--encoder", help="Encoder of the smp models (resnet18, efficientnet-b0, ...)."),
    pretrained: str = typer.Option(
        None,
        "--pretrained",
        help="Starting weights: a .safetensors/.pth file (a whole model, or a backbone for the encoder).",
    ),
    epochs: int = typer.Option(None, "--epochs", help="Maximum epochs."),
    imgsz: int = typer.Option(
        None, "--imgsz", help="Input side in pixels (multiple of 32; the window size when tiled)."
    ),
    batch: int = typer.Option(None, "--batch", help="Batch size."),
    lr: float = typer.Option(None, "--lr", help="Peak learning rate."),
    resize: str = typer.Option(
        None,
        "--resize",
        help="auto | stretch | letterbox | crop | tile (crops for training, overlapping windows for prediction).",
    ),
    masks: str = typer.Option(None, "--masks", help="binary | folder | values: how masks name classes."),
    augment: str = typer.Option(
        None, "--augment", help="none | light | default | strong | an albumentations YAML file."
    ),
    loss: str = typer.Option(None, "--loss", help="dice_bce | focal | tversky."),
    class_weights: str = typer.Option(
        None, "--class-weights", help="none | auto (inverse square-root pixel frequency)."
    ),
    seed: int = typer.Option(None, "--seed", help="Random seed."),
    out: str = typer.Option(None, "--out", help="Runs root folder (default: runs)."),
    name: str = typer.Option(None, "--name", help="Run name (default: exp, then exp2, ...)."),
    exist_ok: bool = typer.Option(None, "--exist-ok", help="Reuse the run folder if it exists."),
    config: Path = typer.Option(None, "--config", help="YAML config file."),
    resume: Path = typer.Option(None, "--resume", help="Continue an interrupted run folder from its last epoch."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. min_area=20 threshold=0.4 scale=0.5."),
) -> None:
    """Train a segmentation model (masks in, masks out); prints the bundle path. Ctrl-C keeps the best so far."""
    options = dict(
        task="segment",
        data=data,
        model=model or "tiny_unet",
        pretrained=pretrained,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        lr=lr,
        resize=resize,
        masks=masks,
        augment=augment,
        loss=loss,
        class_weights=class_weights,
        seed=seed,
        out=out,
        name=name,
        exist_ok=exist_ok,
    )
    if encoder:
        options["model_params"] = {"encoder": encoder}
    _train("segment", options, config, overrides, resume, as_json)


def _train(
    task: str, options: dict, config: Path | None, overrides: list[str] | None, resume: Path | None, as_json: bool
) -> None:
    from inspekt.config import TrainConfig, build_config
    from inspekt.training import resume as resume_run
    from inspekt.training import train

    if resume is None and options["data"] is None:
        raise InspektError("give --data PATH (or --resume RUN to continue an interrupted run)")
    if resume is not None and (options["data"] is not None or config is not None or overrides):
        raise InspektError("--resume continues a run with its saved config.yaml; drop the other options")
    cfg = None if resume else build_config(TrainConfig, file=config, options=options, overrides=overrides)
    total = cfg.epochs if cfg else None
    with progress_bar("training", total, enabled=not as_json) as advance:

        def on_epoch(row: dict) -> None:
            advance()
            if not as_json:
                shown = "  ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
                star = " *" if row["best"] else ""
                err_console.print(
                    f"epoch {row['epoch']:3d}/{row['epochs']}  loss {row['train_loss']:.4f}  "
                    f"val {shown}  {row['seconds']:.1f}s{star}",
                    highlight=False,
                )

        result = resume_run(resume, on_epoch=on_epoch) if resume else train(cfg, on_epoch=on_epoch)
    _print_result(result, as_json)
    if result.interrupted:
        err_console.print(
            f"interrupted: kept the best model so far; continue with inspekt train {task} --resume {result.run_dir}",
            highlight=False,
        )
        raise typer.Exit(130)


def _print_result(result, as_json: bool) -> None:
    """The bundle path (or JSON), notes, skipped files and best metrics of a finished run."""
    if as_json:
        print_json(
            {
                "run_dir": str(result.run_dir),
                "bundle": str(result.bundle),
                "metrics": result.metrics,
                "interrupted": result.interrupted,
                "parity_max_abs_diff": result.parity.max_abs_diff,
                "notes": result.notes,
                "skipped": [vars(s) for s in result.skipped.skipped],
            }
        )
        return
    for note in result.notes:
        err_console.print(note, highlight=False)
    if result.skipped.skipped:
        err_console.print(result.skipped.summary(), highlight=False)
    console.print(f"best: {result.metrics}  (ONNX parity max |diff| {result.parity.max_abs_diff:.2e})")
    print(result.bundle)


@train_app.command("anomaly")
def train_anomaly_command(
    data: str = typer.Option(
        ...,
        "--data",
        help="Dataset with normal images: MVTec (train/good, test/<type>, "
        "ground_truth/), class folders or a CSV with a normal class.",
    ),
    model: str = typer.Option(
        None,
        "--model",
        help="draem (default), ae_ssim, template_ratio, padim, patchcore (see `inspekt models --task anomaly`).",
    ),
    normal: str = typer.Option(None, "--normal", help="The class of normal images (default: good/ok/normal/free...)."),
    weights: str = typer.Option(
        None,
        "--weights",
        help="padim / patchcore: a local pretrained backbone file (.safetensors); without it the backbone is random.",
    ),
    epochs: int = typer.Option(None, "--epochs", help="Epochs (trained methods; default: the method's own)."),
    imgsz: int = typer.Option(None, "--imgsz", help="Input side in pixels (multiple of 32)."),
    batch: int = typer.Option(None, "--batch", help="Batch size."),
    lr: float = typer.Option(None, "--lr", help="Learning rate (default: the method's own)."),
    calibration: str = typer.Option(
        None, "--calibration", help="auto | f1 | quantile | sigma: how the threshold is chosen on validation images."
    ),
    seed: int = typer.Option(None, "--seed", help="Random seed."),
    out: str = typer.Option(None, "--out", help="Runs root folder (default: runs)."),
    name: str = typer.Option(None, "--name", help="Run name (default: exp, then exp2, ...)."),
    exist_ok: bool = typer.Option(None, "--exist-ok", help="Reuse the run folder if it exists."),
    config: Path = typer.Option(None, "--config", help="YAML config file."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    overrides: list[str] = typer.Argument(None, help="key=value overrides, e.g. quantile=0.99 groups=none."),
) -> None:
    """Train an anomaly detector on normal images only; prints the bundle path."""
    from inspekt.config import TrainConfig, build_config
    from inspekt.training import train

    options = dict(
        task="anomaly",
        data=data,
        model=model,
        normal=normal,
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        lr=lr,
        calibration=calibration,
        seed=seed,
        out=out,
        name=name,
        exist_ok=exist_ok,
    )
    if weights:
        options["model_params"] = {"weights": weights}
    cfg = build_config(TrainConfig, file=config, options=options, overrides=overrides)

    def on_progress(row: dict) -> None:
        if not as_json:
            err_console.print(
                "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()),
                highlight=False,
            )

    _print_result(train(cfg, on_epoch=on_progress), as_json)


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
            expanded.append(source)  # a missing file is reported as skipped, not fatal
    return expanded


def _save_visuals(results: list, save_dir: Path, explainer, used: set[str], n_classes: int, enhance) -> None:
    """An annotated copy of every image (with its Grad-CAM overlay when ``explainer`` is given;
    segmentation and anomaly: the mask or heat-map overlay, the mask itself as ``<name>_mask.png`` and
    any reconstruction as ``<name>_reconstruction.png``), enhanced as the
    model saw it; ``used`` holds the names written so far, so equal stems from different folders
    never collide."""
    from inspekt.draw import banner
    from inspekt.io import load_image, save_image

    save_dir = storage.as_path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    for r in results:
        image = load_image(r.source, mode="keep")
        image = enhance(image) if enhance else image
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
        "normalised score of an anomalous image (card: 0.5).",
    ),
    pixel_threshold: float = typer.Option(
        None, "--pixel-threshold", help="Anomaly: normalised map value of an anomalous pixel (card: 0.5)."
    ),
    min_area: int = typer.Option(
        None, "--min-area", help="Segmentation and anomaly: drop regions smaller than this (pixels)."
    ),
    save_dir: str = typer.Option(
        None,
        "--save-dir",
        help="Write an annotated copy of every image here (segmentation: mask overlay and mask PNG).",
    ),
    explain: bool = typer.Option(
        False, "--explain", help="Save Grad-CAM overlays (into --save-dir, default predictions/)."
    ),
    backend: str = typer.Option("onnx", help="onnx | torch."),
    batch: int = typer.Option(16, min=1, help="Images per model call."),
    threads: int = typer.Option(None, help="Inference threads."),
    enhance: str = typer.Option(
        None,
        "--enhance",
        help='Enhancement before the model: a preset ("CLAHE + Denoise"), '
        '"clahe:clip_limit=3 + median:ksize=3", or a pipeline .json file.',
    ),
    dask: str = typer.Option(None, "--dask", help=DASK_HELP),
) -> None:
    """Predict images with a bundle; bad files are reported and skipped, a summary ends the output."""
    import csv
    import sys
    from collections import Counter

    from inspekt.cluster import predict_on
    from inspekt.enhance import Pipeline
    from inspekt.io import BatchReport
    from inspekt.predictor import Predictor

    if as_json and as_csv:
        raise InspektError("choose one of --json and --csv")
    pipeline = Pipeline.parse(enhance) if enhance else None
    options = {
        "backend": backend,
        "threads": threads,
        "batch_size": batch,
        "threshold": threshold,
        "min_area": min_area,
        "pixel_threshold": pixel_threshold,
    }
    predictor = Predictor.load(bundle, **options)
    segment = predictor.card.task in ("segment", "anomaly")
    area = "anomaly_area_pct" if predictor.card.task == "anomaly" else "defect_area_pct"
    explainer = None
    if explain:
        from inspekt.explain import Explainer

        explainer = Explainer.load(predictor.bundle)
        save_dir = save_dir or "predictions"
    files, report = expand_sources(sources), BatchReport()
    if not files:
        raise InspektError(f"no images found in {', '.join(sources)}")
    with (
        progress_bar("predicting", len(files), enabled=not (as_json or as_csv)) as advance,
        maybe_cluster(dask) as client,
    ):
        results, used = [], set()
        chunks = (
            predict_on(client, bundle, files, options=options, enhance=enhance, report=report)
            if client
            else (
                (predictor.predict(files[i : i + batch], report=report, enhance=pipeline), len(files[i : i + batch]))
                for i in range(0, len(files), batch)
            )
        )
        for chunk, n in chunks:
            if save_dir:
                _save_visuals(chunk, save_dir, explainer, used, len(predictor.card.classes), pipeline)
            results.extend(chunk)
            advance(n)
    if as_json:
        for r in results:
            print_json(r.to_dict(topk))
    elif as_csv and segment:
        writer = csv.writer(sys.stdout)
        writer.writerow(["path", "label", "score", "verdict", "components", area, "time_ms"])
        for r in results:
            writer.writerow(
                [
                    r.source,
                    r.label,
                    f"{r.score:.6f}",
                    r.extra["verdict"],
                    len(r.extra["components"]),
                    r.extra[area],
                    f"{r.time_ms:.2f}",
                ]
            )
    elif as_csv:
        writer = csv.writer(sys.stdout)
        classes = predictor.card.classes
        writer.writerow(["path", "label", "score", *(["top"] if topk else [f"score_{c}" for c in classes]), "time_ms"])
        for r in results:
            cells = (
                [" ".join(f"{name}:{p:.4f}" for name, p in r.top(topk))]
                if topk
                else [f"{r.scores[c]:.6f}" for c in classes]
            )
            writer.writerow([r.source, r.label, f"{r.score:.6f}", *cells, f"{r.time_ms:.2f}"])
    elif results and segment:
        table = Table("path", "label", "score" if area == "anomaly_area_pct" else "max p", "regions", "area %", "ms")
        for r in results:
            table.add_row(
                r.source,
                str(r.label),
                f"{r.score:.3f}",
                str(len(r.extra["components"])),
                f"{r.extra[area]:.3f}",
                f"{r.time_ms:.1f}",
            )
        console.print(table)
    elif results:
        table = Table("path", "label", "score", *(["top"] if topk else []), "ms")
        for r in results:
            top = [", ".join(f"{name} {p:.3f}" for name, p in r.top(topk))] if topk else []
            table.add_row(r.source, str(r.label), f"{r.score:.3f}", *top, f"{r.time_ms:.1f}")
        console.print(table)
    counts = Counter(r.label for r in results)
    mean_ms = sum(r.time_ms for r in results) / max(1, len(results))
    err_console.print(
        f"{len(results)} predicted ({', '.join(f'{k}: {v}' for k, v in counts.most_common())}), "
        f"{len(report.skipped)} skipped, {mean_ms:.1f} ms/image"
        + (f"; images saved in {save_dir}" if save_dir and results else ""),
        highlight=False,
    )
    if report.skipped:
        err_console.print(report.summary(), highlight=False)
    if not results:
        raise InspektError(f"none of the {len(files)} file(s) could be read as an image (see the list above)")


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
        help="Quantise model.onnx to INT8 (static, calibrated); refused when accuracy drops by more than --max-drop.",
    ),
    calib: Path = typer.Option(
        None,
        "--calib",
        help="With --int8: labelled dataset folder or CSV to calibrate and "
        "check accuracy on (default: the training data named in the card).",
    ),
    max_drop: float = typer.Option(
        None, "--max-drop", help="With --int8: largest accepted accuracy drop, 0.01 = one point (default 0.01)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Re-export a bundle's ONNX graph from its weights and parity-check it, or quantise it to INT8 (--int8)."""
    from inspekt.bundle import REFERENCE, load_network, open_bundle, save_bundle
    from inspekt.errors import ConfigError

    if not int8 and (calib is not None or max_drop is not None):
        raise ConfigError("--calib and --max-drop apply to --int8 only; add --int8 or leave them out")
    source = open_bundle(bundle)
    if int8:
        from inspekt.quantize import DEFAULT_MAX_DROP, AccuracyDropError, quantize_bundle

        limit = DEFAULT_MAX_DROP if max_drop is None else max_drop
        try:
            report = quantize_bundle(source, out, calib=calib, max_drop=limit, overwrite=overwrite, archive=not folder)
        except AccuracyDropError as exc:
            if as_json:  # the figures stay machine-readable; the error line still follows on stderr
                print_json(exc.report.to_dict())
            raise
        if as_json:
            print_json(report.to_dict())
            return
        console.print(report.summary(), highlight=False)
        print(report.path)
        return
    target = out or source.path.with_name(source.path.name + ("-export" if folder else ""))
    extra = {REFERENCE: source.read(REFERENCE)} if source.has(REFERENCE) else None
    card = source.card.model_copy(update={"precision": "fp32"})  # the graph is re-exported from fp32 weights
    written, parity = save_bundle(
        load_network(source), card, target, extra_files=extra, archive=not folder, overwrite=overwrite
    )
    if as_json:
        print_json(
            {"bundle": str(written), "parity_max_abs_diff": parity.max_abs_diff, "parity_inputs": parity.n_inputs}
        )
        return
    console.print(
        f"ONNX parity: max |diff| {parity.max_abs_diff:.2e} on {parity.n_inputs} inputs (limit {parity.tolerance:g})"
    )
    print(written)
