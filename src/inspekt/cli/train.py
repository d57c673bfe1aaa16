"""``inspekt train <task>``: one command per registered task, its options generated from ``TrainConfig``.

Each option is declared once, as a ``TrainConfig`` field (type, default, description); a task lists
which fields its command offers (``Task.train_options``), and every other key stays reachable as a
``key=value`` override or in a ``--config`` YAML file.
"""

from __future__ import annotations

import inspect
import typing
from pathlib import Path
from typing import Any

import typer

from inspekt.cli import app
from inspekt.cli.common import console, err_console, print_json, progress_bar
from inspekt.config import TrainConfig
from inspekt.errors import InspektError
from inspekt.tasks import TASKS, Task

train_app = typer.Typer(help=f"Train a model: inspekt train {'|'.join(TASKS)} --data PATH.", no_args_is_help=True)
app.add_typer(train_app, name="train")

_PY_TYPES = (bool, int, float)


def _option_type(key: str) -> type:
    """The command-line type of a config field: bool, int or float when the field is one, else text
    (choices, paths, YAML values are validated by TrainConfig)."""
    annotation = TrainConfig.model_fields[key].annotation
    found = [a for a in (annotation, *typing.get_args(annotation)) if a in _PY_TYPES]
    return found[0] if found else str


def _help(key: str) -> str:
    """A config field's description as option help: a sentence, unless it starts with one of its values."""
    field = TrainConfig.model_fields[key]
    text = (field.description or key).rstrip(".") + "."
    values = {str(v) for arg in typing.get_args(field.annotation) or (field.annotation,) for v in typing.get_args(arg)}
    first = text.split()[0].strip(",:;")
    return text if first in values else text[0].upper() + text[1:]


def _parameters(task: Task) -> list[inspect.Parameter]:
    """The command's parameters: the task's config fields, its model-parameter shortcuts, then the
    options every train command has."""
    params = []
    for key in task.train_options:
        flag = "--" + key.replace("_", "-")
        option = typer.Option(None, flag, help=task.train_help.get(key) or _help(key))
        params.append(
            inspect.Parameter(key, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=_option_type(key))
        )
    for key, help_text in task.train_params.items():
        option = typer.Option(None, "--" + key.replace("_", "-"), help=help_text)
        params.append(inspect.Parameter(f"param_{key}", inspect.Parameter.KEYWORD_ONLY, default=option, annotation=str))
    common = (
        ("config", Path, typer.Option(None, "--config", help="YAML config file.")),
        (
            "resume",
            str,  # a folder or a URL (a Path would turn s3://b/run into s3:/b/run)
            typer.Option(None, "--resume", help="Continue an interrupted run folder (or URL) from its last epoch."),
        ),
        ("as_json", bool, typer.Option(False, "--json", help="Print JSON.")),
        (
            "overrides",
            list[str],
            typer.Argument(None, help=f"key=value overrides of any config key, e.g. {task.train_example}."),
        ),
    )
    for name, annotation, default in common:
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return params


def _command(task: Task):
    """The ``inspekt train <task>`` function, with a signature Typer reads its options from."""

    def command(**given: Any) -> None:
        options = {key: given[key] for key in task.train_options}
        params = {key: given[f"param_{key}"] for key in task.train_params if given[f"param_{key}"] is not None}
        if params:
            options["model_params"] = params
        _train(task, options, given["config"], given["overrides"], given["resume"], given["as_json"])

    command.__signature__ = inspect.Signature(_parameters(task))
    command.__doc__ = task.train_summary
    command.__name__ = f"train_{task.name}"
    return command


for _task in TASKS.values():
    train_app.command(_task.name)(_command(_task))


def _train(
    task: Task, options: dict, config: Path | None, overrides: list[str] | None, resume: str | None, as_json: bool
) -> None:
    from inspekt.config import build_config
    from inspekt.engine.trainer import epoch_line, train
    from inspekt.engine.trainer import resume as resume_run

    if resume is None and options.get("data") is None and config is None:
        raise InspektError("give --data PATH (or --resume RUN to continue an interrupted run)")
    if resume is not None and (options.get("data") is not None or config is not None or overrides):
        raise InspektError("--resume continues a run with its saved config.yaml; drop the other options")
    options = {key: value for key, value in options.items() if value is not None} | {"task": task.name}
    cfg = None if resume else build_config(TrainConfig, file=config, options=options, overrides=overrides)
    known = cfg is not None and not task.config_defaults(cfg) & {"epochs"}
    epochs = task.configure(cfg).epochs if known else None  # the task's own default when not given
    with progress_bar("training", epochs) as advance:

        def on_epoch(row: dict) -> None:
            err_console.print(epoch_line(row), highlight=False)  # stderr: --json's stdout stays one document
            if "epoch" in row and known:  # else the epoch lines say "epoch 3/10" and a bare count is noise
                advance()

        result = resume_run(resume, on_epoch=on_epoch) if resume else train(cfg, on_epoch=on_epoch)
    _print_result(result, as_json)
    if result.interrupted:
        err_console.print(
            f"interrupted: kept the best model so far; continue with inspekt train {task.name} --resume "
            f"{result.run_dir}",
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
                "sanity": result.sanity.model_dump() if result.sanity else None,
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
