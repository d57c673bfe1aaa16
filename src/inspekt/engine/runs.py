"""Run folders: ``<out>/<task>/<name>``, with an incrementing suffix unless ``exist_ok``; and
reading a finished run's figures back (``inspekt runs compare``)."""

from __future__ import annotations

import csv
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from inspekt.bundle import open_bundle
from inspekt.errors import ConfigError, InspektError, RunUnfinished, TrainingDiverged
from inspekt.storage import as_path

RUN_FILES = ("results.csv", "config.yaml", "bundle/card.json")

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


def new_run_dir(out: str | Path, task: str, name: str = "exp", *, exist_ok: bool = False) -> Path:
    """Create and return a fresh run folder.

    ``runs/classify/exp``, then ``exp2``, ``exp3`` ... With ``exist_ok`` the named folder is
    reused as it is.

    Args:
        out: the runs root.
        task: the task (first level below ``out``).
        name: the run name.
        exist_ok: reuse ``<out>/<task>/<name>`` if it exists.

    Returns:
        The created folder.

    Raises:
        ConfigError: a name with path separators or odd characters.
    """
    if not _NAME.match(name):
        raise ConfigError(f"run name {name!r} may hold only letters, digits, '.', '_' and '-'")
    parent = Path(out) / task
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create the run folder under {out!s}: {exc.strerror or exc}; choose another --out"
        ) from exc
    candidate, number = parent / name, 2
    while True:
        try:  # mkdir is atomic: two runs started at once never share a folder
            candidate.mkdir(exist_ok=exist_ok)
            return candidate
        except FileExistsError:
            candidate, number = parent / f"{name}{number}", number + 1


def _cell(value: str | None) -> float | str | None:
    """A results.csv cell: a number, text (e.g. the network a row is about), or None when empty."""
    if value in (None, ""):
        return None
    try:
        return float(value)
    except ValueError:
        return value


def read_results(path: str | Path) -> list[dict]:
    """The epoch rows of a run's ``results.csv`` (numbers as floats, text kept); [] when there is none."""
    path = as_path(path)  # a local Path or a storage.RemotePath
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as f:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


@dataclass(frozen=True)
class RunSummary:
    """The figures of one training run folder that ``inspekt runs compare`` shows."""

    run: str
    model: str
    imgsz: tuple[int, int]
    epochs_run: int
    epochs_planned: int | None
    best_val_macro_f1: float | None
    best_epoch: int | None
    val_accuracy: float | None
    val_roc_auc: float | None
    train_seconds: float
    bundle_bytes: int
    history: list[dict] = field(repr=False)
    config: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready figures (without the history and the config)."""
        return {k: v for k, v in asdict(self).items() if k not in ("history", "config")}


PER_RUN_KEYS = ("out", "name", "exist_ok")  # where a run was written, not how it was trained


def _flat(config: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(config, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        out |= _flat(value, f"{name}.") if isinstance(value, dict) and value else {name: value}
    return out


def config_differences(summaries: list[RunSummary]) -> dict[str, list]:
    """The training settings (config.yaml keys, nested ones dotted: ``model_params.width``) whose values
    differ between the runs, each with its value per run (None: not set in that run)."""
    flat = [_flat(s.config) for s in summaries]
    keys = dict.fromkeys(k for f in flat for k in f if k not in PER_RUN_KEYS)
    return {k: [f.get(k) for f in flat] for k in keys if len({repr(f.get(k)) for f in flat}) > 1}


def read_run(folder: str | Path) -> RunSummary:
    """Summarise a run folder written by training (results.csv, config.yaml, bundle/card.json).

    Args:
        folder: the run folder, e.g. ``runs/classify/exp`` or ``s3://bucket/runs/classify/exp``.

    Returns:
        Its figures and epoch history.

    Raises:
        ConfigError: the folder is missing or lacks one of those files, or they are unreadable.
        BundleError: the bundle's card is invalid.
    """
    import yaml

    from inspekt.storage import RemotePath, as_path

    folder = as_path(folder)
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such run folder (give runs/<task>/<name> folders written by inspekt train)")
    missing = [name for name in RUN_FILES if not (folder / name).is_file()]
    if missing:
        raise ConfigError(
            f"{folder}: not a complete run folder: {', '.join(missing)} missing "
            f"(a training run holds {', '.join(RUN_FILES)})"
        )
    history = read_results(folder / "results.csv")
    if not history:
        raise ConfigError(f"{folder}: results.csv holds no epochs; the run did not finish its first epoch")
    try:
        config = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{folder / 'config.yaml'}: not readable YAML ({str(exc).splitlines()[0]})") from exc
    card = open_bundle(folder / "bundle").card
    best = _bundled_epoch(history, card.metrics)
    bundle = folder / "bundle"
    bundle_files = bundle.find() if isinstance(bundle, RemotePath) else [p for p in bundle.rglob("*") if p.is_file()]
    planned = config.get("epochs") if isinstance(config, dict) else None
    return RunSummary(
        run=str(folder),
        model=card.architecture,
        imgsz=card.input.size,
        epochs_run=len(history),
        epochs_planned=planned if isinstance(planned, int) else None,
        best_val_macro_f1=best.get("val_macro_f1"),
        best_epoch=int(best["epoch"]) if best.get("epoch") is not None else None,
        val_accuracy=best.get("val_accuracy"),
        val_roc_auc=best.get("val_roc_auc"),
        train_seconds=float(sum(row.get("seconds") or 0.0 for row in history)),
        bundle_bytes=sum(p.stat().st_size for p in bundle_files),
        history=history,
        config=config if isinstance(config, dict) else {},
    )


def _bundled_epoch(history: list[dict], metrics: dict) -> dict:
    """The results.csv row of the epoch whose model the bundle holds (the card's ``best_epoch``); for
    a card without one, the epoch with the best validation macro-F1."""
    saved = metrics.get("best_epoch")
    rows = [row for row in history if saved is not None and row.get("epoch") == int(saved)]
    if rows:
        return rows[0]
    scored = [row for row in history if row.get("val_macro_f1") is not None]
    return max(scored, key=lambda row: row["val_macro_f1"]) if scored else {}


def remote_run_dir(out: str, task: str, name: str = "exp", *, exist_ok: bool = False):
    """The first free run folder ``<out>/<task>/<name>[N]`` under a URL (nothing is created yet).

    Args:
        out: the runs root, an fsspec URL such as ``s3://bucket/runs``.
        task: the task (first level below ``out``).
        name: the run name.
        exist_ok: reuse ``<out>/<task>/<name>`` even if it holds files.

    Returns:
        The run folder as a ``storage.RemotePath``.

    Raises:
        ConfigError: a name with path separators or odd characters.
    """
    from inspekt.storage import as_path

    if not _NAME.match(name):
        raise ConfigError(f"run name {name!r} may hold only letters, digits, '.', '_' and '-'")
    parent = as_path(out) / task
    candidate, number = parent / name, 2
    # Object stores have no atomic mkdir: two runs started at the same moment could pick the same name.
    while not exist_ok and candidate.exists():
        candidate, number = parent / f"{name}{number}", number + 1
    return candidate


def _upload_run(run_dir: Path, target, cfg) -> None:
    """Upload a staged run folder to ``target``, its config.yaml naming where the run really lives.

    Raises:
        InspektError: the upload failed; the message says where the run is kept locally.
    """
    import yaml

    from inspekt.storage import upload_folder

    config = run_dir / "config.yaml"
    if config.is_file():  # record where the run really lives, not the temporary folder
        saved = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
        saved.update({"out": str(cfg.out), "name": target.name})
        config.write_text(yaml.safe_dump(saved, sort_keys=False), encoding="utf-8")
    try:
        upload_folder(run_dir, target)
    except InspektError as exc:
        raise InspektError(
            f"{exc}; the run is kept at {run_dir}: upload it to {target} yourself (then --resume works there), "
            "or train again with a writable --out"
        ) from None


def train_staged(cfg, train, **options):
    """Train into a local temporary run folder, then upload it to the remote ``cfg.out`` (e.g. S3).

    Checkpoints, curves and the bundle are written locally while training runs (torch and the
    bundle writer need real files); the finished folder is uploaded in one pass and the local copy
    removed. A run that fails uploads nothing, except one with weights worth keeping: one that
    diverged after a good epoch (its best model is uploaded, then the divergence raised) or one
    interrupted while its bundle was written (uploaded, then ``RunUnfinished`` raised: ``--resume``
    the URL finishes it). A finished run whose upload fails is kept locally (the error says where).

    Args:
        cfg: the ``TrainConfig``, whose ``out`` is a URL.
        train: the training function (``inspekt.engine.trainer.train``).
        **options: passed on to ``train`` (e.g. ``on_epoch``).

    Returns:
        The ``TrainResult`` with ``run_dir`` and ``bundle`` pointing at the uploaded copies.
    """
    from inspekt.storage import check_writable

    target = remote_run_dir(cfg.out, cfg.task, cfg.name, exist_ok=cfg.exist_ok)
    check_writable(target, "upload the run folder")  # before hours of training, not after
    staging = _staging()
    local = cfg.model_copy(update={"out": str(staging), "name": target.name, "exist_ok": True})
    return _staged(lambda: train(local, **options), staging, staging / cfg.task / target.name, target, cfg)


def resume_staged(target, resume, **options):
    """``resume`` a run stored at a URL: copied to a local temporary folder, resumed there, uploaded
    back to ``target`` (as ``train_staged`` uploads a new run).

    Args:
        target: the run folder's URL.
        resume: the resume function (``inspekt.engine.trainer.resume``).
        **options: passed on to ``resume`` (e.g. ``on_epoch``).
    """
    from inspekt.config import TrainConfig, build_config
    from inspekt.storage import check_writable, download_folder

    target = as_path(target)
    if not (target / "config.yaml").is_file():
        raise ConfigError(f"{target}: not a run folder (no config.yaml); give the folder `inspekt train` printed")
    check_writable(target, "upload the resumed run")  # before the epochs, not after
    staging = _staging()
    run_dir = staging / target.name
    try:
        download_folder(target, run_dir)
        cfg = build_config(TrainConfig, file=run_dir / "config.yaml")
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return _staged(lambda: resume(run_dir, **options), staging, run_dir, target, cfg)


def _staging() -> Path:
    import tempfile

    from inspekt.io import shareable

    # mkdtemp is owner-only; the run is kept here when the upload fails: readable as mkdir would make it
    return Path(shareable(tempfile.mkdtemp(prefix="inspekt-run-")))


def _staged(run, staging: Path, run_dir: Path, target, cfg):
    """``run()`` into the local ``run_dir`` (under ``staging``), then upload it to ``target``."""
    import dataclasses

    try:
        result = run()
    except (TrainingDiverged, RunUnfinished) as exc:  # weights worth keeping: upload them, then say so
        kept = run_dir / ("checkpoints/last.pt" if isinstance(exc, RunUnfinished) else "bundle/card.json")
        if not kept.exists():
            shutil.rmtree(staging, ignore_errors=True)
            raise
        _upload_run(run_dir, target, cfg)
        shutil.rmtree(staging, ignore_errors=True)
        raise _moved(exc, run_dir, target) from exc
    except InspektError as exc:  # named by where the user's run is, not by the staging folder
        shutil.rmtree(staging, ignore_errors=True)
        raise _moved(exc, run_dir, target) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    _upload_run(Path(result.run_dir), target, cfg)
    shutil.rmtree(staging, ignore_errors=True)
    bundle = target / "bundle" if result.bundle is not None else None
    return dataclasses.replace(result, run_dir=target, bundle=bundle)


def _moved(exc: InspektError, run_dir: Path, target) -> InspektError:
    """The same error, naming the remote run folder instead of the local one."""
    message = str(exc).replace(str(run_dir), str(target))
    if isinstance(exc, TrainingDiverged):
        return TrainingDiverged(message, epoch=exc.epoch, what=exc.what)
    return type(exc)(message)
