"""``inspekt version``, ``inspekt checks``, ``inspekt models``."""

from __future__ import annotations

import os
import shutil
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import typer
from rich.table import Table

from inspekt.cli import app
from inspekt.cli.common import console, print_json, progress_bar

PACKAGES = (
    "inspekt",
    "numpy",
    "pillow",
    "opencv-python-headless",
    "torch",
    "torchvision",
    "timm",
    "onnx",
    "onnxruntime",
    "scikit-learn",
    "pydantic",
    "typer",
)
BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


@app.command("version")
def version_cmd() -> None:
    """Print the inspekt version."""
    print(_version("inspekt") or "unknown")


def environment_checks() -> dict:
    """Versions, threads, runtimes and optional tools of this environment."""
    import onnxruntime as ort
    import torch

    from inspekt import _compat

    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    return {
        "versions": {p: _version(p) for p in PACKAGES},
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "onnxruntime_providers": ort.get_available_providers(),
        "torchvision_workaround_active": _compat.apply(),
        "chromium": browser,
        "hf_hub_offline": os.environ.get("HF_HUB_OFFLINE") == "1",
    }


@app.command()
def checks(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Report versions, threads, ONNX Runtime providers, the torchvision workaround and Chromium."""
    found = environment_checks()
    if as_json:
        print_json(found)
        return
    table = Table("check", "value", title="inspekt environment", show_lines=False)
    for name, value in found["versions"].items():
        table.add_row(name, value or "[red]not installed[/]")
    for key, value in found.items():
        if key != "versions":
            shown = ", ".join(value) if isinstance(value, list) else str(value if value is not None else "not found")
            table.add_row(key.replace("_", " "), shown)
    console.print(table)


@app.command()
def models(
    task: str = typer.Option(None, help="Only models of this task."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """List the registered model names."""
    from inspekt.models import get_entry, list_models

    entries = [get_entry(n) for n in list_models(task)]
    tunable = {
        e.name: {k: v for k, v in e.parameters().items() if k not in ("num_classes", "in_chans", "input_size")}
        for e in entries
    }
    if as_json:
        print_json(
            [
                {"name": e.name, "task": e.task, "description": e.description, "parameters": tunable[e.name]}
                for e in entries
            ]
        )
        return
    table = Table("name", "task", "description", "model_params")
    for e in entries:
        table.add_row(e.name, e.task, e.description, ", ".join(f"{k}={v}" for k, v in tunable[e.name].items()))
    console.print(table)
    console.print("Any other timm architecture: --model timm/<name>. Set parameters with model_params.NAME=VALUE.")


@app.command()
def demo(workspace: Path = typer.Option(Path("workspace"), help="Folder to build the demo in.")) -> None:
    """Build the demo workspace from synthetic data (once) and print a guided tour."""
    from inspekt.demo import build_demo

    with progress_bar("building the demo workspace", None):
        ws = build_demo(workspace)
    console.print(f"\n[bold]inspekt demo workspace[/]: {ws.root.resolve()}")
    console.print(
        "built now: " + (", ".join(ws.built) if ws.built else "nothing (everything was already there)"), soft_wrap=True
    )
    for _name, path in ws.datasets.items():
        console.print(f"  data    {path}")
    console.print(f"  model   {ws.model}  validation {ws.metrics}", soft_wrap=True)
    table = Table("incoming image", "true", "predicted", "score", title="predictions on data/incoming")
    for p in ws.predictions[::3]:  # a few of each class
        table.add_row(Path(p.source).name, Path(p.source).parent.name, str(p.label), f"{p.score:.3f}")
    console.print(table)
    data, model = ws.datasets["surfaces"], ws.model
    console.print(
        TOUR.format(
            data=data,
            model=model,
            incoming=ws.datasets["incoming"],
            seg=ws.datasets["surfaces-seg"],
            segmenter=ws.root / "models" / "surface-segmenter.inspekt",
            anomaly=ws.root / "models" / "surface-anomaly.inspekt",
            mvtec=ws.datasets["surfaces-mvtec"],
            drifted=ws.datasets["incoming-drifted"],
            root=ws.root,
        ),
        highlight=False,
        soft_wrap=True,
    )


TOUR = """[bold]Try next[/] (first: source .venv/bin/activate)
  inspekt data info {data}                 # layout, classes, sizes, corrupt files, duplicates
  inspekt data info {seg}             # images + masks
  inspekt data split {data} --out split.csv   # stratified train/val/test CSV
  inspekt show {model}                     # what the model is: classes, input, thresholds, metrics, data
  inspekt predict {model} {incoming} --topk 2 --save-dir predictions --explain
  inspekt eval {model} --data {incoming} --plots report   # on images it never saw: metrics, confusion, errors
  inspekt explain {model} {incoming} --out cams       # Grad-CAM overlays
  inspekt train classify --data {data} --epochs 20 --imgsz 64 --augment light
  inspekt export {model} --out copy.inspekt    # re-export with the ONNX parity check
  inspekt export {model} --int8 --calib {data} --out int8.inspekt   # refused if it loses > 1 point or is slower
  inspekt predict {segmenter} {seg}/images --save-dir masks   # masks, regions, overlays
  inspekt predict {anomaly} {mvtec}/test --save-dir anomalies   # scores, anomaly maps, reconstructions
  inspekt eval {anomaly} --data {mvtec} --plots anomaly-report   # AUROC, pixel AUROC, AUPRO, worst errors
  inspekt drift {model} {incoming}         # no drift: the same process as training
  inspekt drift {model} {drifted} --html drift.html   # darker and blurred: drift detected
  inspekt app --workspace {root}           # the workbench in a browser
  inspekt serve {model} {anomaly}   # REST API on http://127.0.0.1:8000/docs
  inspekt monitor --model {model} --source {drifted} --window 20 --once --db {root}/monitor.db  # + drift
  inspekt monitor report --db {root}/monitor.db   # what the monitor recorded (also the app's Monitor page)
  inspekt checks                           # versions, threads, runtimes
"""
