"""The trainer: one run of any task, from a config to a run folder with a parity-checked bundle.

config -> the task's training (``inspekt.tasks.<task>``: data, network, objective) -> the one loop
(``inspekt.models.loop``) with this module's hooks -> ``results.csv`` and ``checkpoints/last.pt``
after every epoch -> the bundle (ONNX parity-checked) with its drift reference -> ``TrainResult``.

``checkpoints/last.pt`` is written atomically after every epoch, and every epoch's randomness is
derived from (seed, epoch), so ``resume`` continues after Ctrl-C or ``kill -9`` exactly as if
nothing had happened; this holds for every network the loop trains (classifiers, segmenters,
DRAEM, AE-SSIM, template-ratio's variant classifier). Methods that fit statistics in one pass
(PaDiM, PatchCore) have no epochs to resume.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspekt.bundle import CARD, REFERENCE
from inspekt.card import Sanity, library_versions
from inspekt.config import TrainConfig, build_config, read_yaml, save_config
from inspekt.data import open_dataset
from inspekt.engine.plots import plot_history
from inspekt.engine.reference import write_reference
from inspekt.engine.runs import new_run_dir, resume_staged, train_staged
from inspekt.errors import ConfigError, NothingTrained, RunUnfinished, TrainingDiverged
from inspekt.io import write_file, writing
from inspekt.models.runtime import ParityReport, save_bundle
from inspekt.progress import say, step
from inspekt.results import BatchReport
from inspekt.storage import is_remote
from inspekt.tasks import get_task

if TYPE_CHECKING:
    from inspekt.models.loop import LoopResult, Objective

EpochCallback = Callable[[dict], None]
LAST, BEST, RESULTS, CONFIG = "checkpoints/last.pt", "checkpoints/best.safetensors", "results.csv", "config.yaml"


@dataclass
class TrainResult:
    """What a training run produced."""

    run_dir: Path
    bundle: Path | None
    metrics: dict[str, float]
    parity: ParityReport | None
    skipped: BatchReport
    history: list[dict] = field(default_factory=list)
    interrupted: bool = False
    notes: list[str] = field(default_factory=list)
    sanity: Sanity | None = None  # the model's training checks (card.sanity); failed: never a default model


def write_results(history: list[dict], path: Path) -> None:
    """Write the epoch rows as ``results.csv`` (atomically; a full disk is one ``InspektError``)."""
    fields = list(dict.fromkeys(k for row in history for k in row))
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    write_file(path, text.getvalue().encode("utf-8"))


def _save_checkpoint(path: Path, payload: dict) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()  # serialised here, written by Python: a full disk is an OSError that names the file
    torch.save(payload, buffer)
    write_file(path, buffer.getvalue())  # atomic: a kill -9 or a full disk leaves the previous checkpoint intact


def _load_checkpoint(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise ConfigError(
            f"{path.parent.parent}: no {LAST} to resume from (the run never finished an epoch, or its model "
            "fits in one pass); train again"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors and plain values only
    except Exception as exc:
        raise ConfigError(f"{path}: unreadable checkpoint ({type(exc).__name__}); start a new run") from exc
    if "loop" in state:  # written before the one loop (inspekt <= 5736bbe): the optimiser state sat under "loop"
        state = {k: v for k, v in state.items() if k != "loop"} | state["loop"]
    return state


class _Hooks:
    """The loop's hooks for one run folder: progress rows to ``results.csv`` and the caller, the
    state after every epoch to ``last.pt`` (the best weights also to ``best.safetensors``)."""

    def __init__(self, run_dir: Path, fingerprint: str, on_epoch: EpochCallback | None, resume: dict | None):
        self.run_dir, self.fingerprint, self.on_epoch, self.resume = run_dir, fingerprint, on_epoch, resume
        self.history: list[dict] = list(resume["history"]) if resume else []
        self.result: LoopResult | None = None
        self.diverged: TrainingDiverged | None = None  # a network diverged after a good epoch (best kept)

    def loop(self, objective: Objective) -> LoopResult:
        """Run the one loop with these hooks (what a task's training is given)."""
        from inspekt.models.loop import LoopHooks, run_loop  # torch: imported when training starts

        hooks = LoopHooks(on_epoch=self.progress, checkpoint=self._checkpoint, resume=self.resume)
        self.result = run_loop(objective, hooks)
        self.diverged = self.diverged or self.result.diverged
        return self.result

    def progress(self, row: dict) -> None:
        """An epoch row (to results.csv and the caller) or a step of a one-pass fit (to the caller)."""
        if "epoch" in row:  # statistics methods also send steps ("features 3/10"): progress only
            self.history.append({k: v for k, v in row.items() if k not in ("epochs", "best")})
            write_results(self.history, self.run_dir / RESULTS)
        (self.on_epoch or _say_epoch)(row)

    def _checkpoint(self, state: dict) -> None:
        from safetensors.torch import save

        if state["stale"] == 0 and state["best_model"] is not None:
            write_file(self.run_dir / BEST, save({k: v.contiguous() for k, v in state["best_model"].items()}))
        _save_checkpoint(self.run_dir / LAST, state | {"fingerprint": self.fingerprint})


def epoch_line(row: dict) -> str:
    """One epoch (loss, validation metrics, seconds, * when the best so far), or a step of a one-pass fit."""
    if "epoch" not in row:
        return "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items())
    shown = "  ".join(f"{k.removeprefix('val_')} {v:.4f}" for k, v in row.items() if k.startswith("val_"))
    network = f"{row['network']}: " if "network" in row else ""
    star = " *" if row.get("best") else ""
    return (
        f"{network}epoch {row['epoch']:3d}/{row['epochs']}  loss {row['train_loss']:.4f}  "
        f"{f'val {shown}  ' if shown else ''}{row['seconds']:.1f}s{star}"
    )


def _say_epoch(row: dict) -> None:
    """Without the caller's ``on_epoch`` (the Python API), each epoch is announced like the CLI prints it."""
    say(epoch_line(row))


def _diverged(exc: TrainingDiverged, cfg: TrainConfig, kept: str) -> TrainingDiverged:
    """The run's divergence in the words of its config: which lr to lower, and what was kept."""
    return TrainingDiverged(
        f"training diverged at epoch {exc.epoch} ({exc.what}): lower --lr (it was {cfg.lr:g}; try {cfg.lr / 10:g}) "
        f"or check the inputs for NaN; {kept}",
        epoch=exc.epoch,
        what=exc.what,
    )


def _run(training: Any, cfg: TrainConfig, run_dir: Path, on_epoch: EpochCallback | None, resume: dict | None = None):
    """Fit through the task's training with this run folder's hooks; write the bundle and side files."""
    with writing(run_dir):  # a full disk anywhere in the run folder (the big files name themselves)
        result, diverged = _fit_and_save(training, cfg, run_dir, on_epoch, resume)
    if diverged is not None:
        raise _diverged(diverged, cfg, f"kept the best model before it in {result.bundle}")
    return result


def _fit_and_save(training: Any, cfg: TrainConfig, run_dir: Path, on_epoch: EpochCallback | None, resume: dict | None):
    (run_dir / LAST).parent.mkdir(parents=True, exist_ok=True)
    hooks = _Hooks(run_dir, training.ds.fingerprint(), on_epoch, resume)
    try:
        return _fit_and_bundle(training, cfg, run_dir, hooks)
    except NothingTrained:
        raise NothingTrained(f"interrupted before the first epoch finished; nothing to keep in {run_dir}") from None
    except TrainingDiverged as exc:
        raise _diverged(exc, cfg, f"no epoch finished well, so there is nothing to keep in {run_dir}") from None
    except KeyboardInterrupt:  # the loop keeps its own Ctrl-C; this one came after it, while the run was finishing
        if hooks.result is None:  # a one-pass fit (PaDiM, PatchCore) or before the loop: nothing to finish from
            raise
        raise RunUnfinished(
            f"interrupted while the run was finishing (its bundle is not complete); the trained weights are kept: "
            f"continue it with inspekt train {cfg.task} --resume {run_dir}"
        ) from None


def _fit_and_bundle(training: Any, cfg: TrainConfig, run_dir: Path, hooks: _Hooks):
    fitted = training.fit(hooks, run_dir)
    history = hooks.result.history if hooks.result else hooks.history
    if history and "train_loss" in history[0]:
        plot_history(history, run_dir / "curves.png")
    versions = fitted.card.versions or library_versions()
    (run_dir / "versions.json").write_text(json.dumps(versions, indent=2) + "\n", encoding="utf-8")
    if fitted.report.skipped:
        (run_dir / "skipped.txt").write_text(fitted.report.summary() + "\n", encoding="utf-8")
    with step("exporting the bundle: ONNX export and parity check"):
        bundle, parity = save_bundle(
            fitted.network, fitted.card, run_dir / "bundle", samples=fitted.samples, overwrite=True
        )
    write_reference(bundle, fitted.train_files, fitted.val_files, seed=cfg.seed, also_seen=fitted.calibration_files)
    interrupted = bool(hooks.result and hooks.result.interrupted)
    result = TrainResult(
        run_dir,
        bundle,
        dict(fitted.card.metrics),
        parity,
        fitted.report,
        history,
        interrupted,
        fitted.notes,
        fitted.card.sanity,
    )
    return result, hooks.diverged


def _configured(cfg: TrainConfig) -> tuple[Any, TrainConfig]:
    """The config's task and the config with the task's defaults; an unknown task or model fails here,
    before any data is read."""
    from inspekt.models import get_entry  # registers the built-in models (torch)

    task = get_task(cfg.task)
    cfg = task.configure(cfg)
    get_entry(cfg.model, cfg.task)
    return task, cfg


def train(
    config: TrainConfig | str | Path | None = None, *, on_epoch: EpochCallback | None = None, **options: Any
) -> TrainResult:
    """Train a model (classify, segment or anomaly) and write its run folder and bundle.

    ``inspekt.train(data="parts/", model="resnet18", epochs=30)`` or ``train(TrainConfig(...))``;
    ``train(task="anomaly", data="mvtec/bottle", model="padim")`` fits on the normal images only.

    Args:
        config: a validated ``TrainConfig`` or a config YAML file (as the CLI's ``--config``); keyword
            ``options`` given beside it override its keys. Or give only the keys, as ``options``.
        on_epoch: called with each epoch's metrics row (progress display); anomaly methods send their
            own rows (epoch and loss, or feature-extraction steps).
        **options: config keys (task defaults to classify), validated like the CLI's.

    Returns:
        The run folder, bundle, best validation metrics, parity report and skipped files. When
        interrupted (Ctrl-C) after at least one epoch, the best model so far is still bundled
        and ``interrupted`` is True.

    Raises:
        ConfigError: invalid options, a task this version cannot train, or unusable weights.
        DatasetError: the dataset cannot be read or is unfit for the task.
        TrainingDiverged: the loss became NaN or infinite (the learning rate is too high); the best
            epoch before it, if one finished, is still bundled in the run folder.
        InspektError: the disk filled up while writing the run folder.
    """
    cfg = _train_config(config, options)
    if is_remote(cfg.out):  # checkpoints need real files: train in a local folder, upload it at the end
        return train_staged(cfg, train, on_epoch=on_epoch)
    task, cfg = _configured(cfg)
    training = task.training(cfg, open_dataset(cfg.data))  # bad data or parameters fail before the run folder
    run_dir = new_run_dir(cfg.out, cfg.task, cfg.name, exist_ok=cfg.exist_ok)
    save_config(cfg, run_dir / CONFIG, exclude=task.config_defaults(cfg))
    return _run(training, cfg, run_dir, on_epoch)


def _train_config(config: TrainConfig | str | Path | None, options: dict[str, Any]) -> TrainConfig:
    """The config ``train`` runs: a TrainConfig or YAML file, with the keyword options over its keys."""
    if "resume" in options:
        raise ConfigError(
            f"resume={options['resume']!r}: to continue an interrupted run, call inspekt.resume(RUN_DIR) "
            "(train starts a new run)"
        )
    if config is None:
        return build_config(TrainConfig, options={"task": "classify", **options})
    if isinstance(config, TrainConfig):
        return build_config(TrainConfig, base=config, options=options)
    if isinstance(config, (str, Path)) and Path(config).suffix.lower() in (".yaml", ".yml"):
        task = read_yaml(config).get("task", "classify")
        return build_config(TrainConfig, file=config, options={"task": task, **options})
    raise ConfigError(
        f"train's first argument is a TrainConfig or a config YAML file, not {config!r}; give the data by "
        "name: inspekt.train(data='split.csv', task='detect', epochs=30)"
    )


def resume(run_dir: str | Path, *, on_epoch: EpochCallback | None = None) -> TrainResult:
    """Continue an interrupted run from its last completed epoch, exactly (a run interrupted while
    its bundle was written after the last epoch: write the bundle).

    Args:
        run_dir: the run folder (holding ``config.yaml`` and ``checkpoints/last.pt``); a URL is
            copied to a local folder, resumed there and uploaded again (``train_staged``).
        on_epoch: progress callback, as for ``train``.

    Raises:
        ConfigError: not a run folder, no checkpoint, a finished run, or changed data.
    """
    if is_remote(run_dir):
        return resume_staged(run_dir, resume, on_epoch=on_epoch)
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir}: not a run folder (no {CONFIG}); give the folder `inspekt train` printed")
    cfg = build_config(TrainConfig, file=run_dir / CONFIG)
    state = _load_checkpoint(run_dir / LAST)
    if state["finished"] and all((run_dir / "bundle" / name).is_file() for name in (CARD, REFERENCE)):
        raise ConfigError(
            f"{run_dir}: the run already finished (epoch {state['epoch']}); its bundle is {run_dir / 'bundle'}"
        )
    task, cfg = _configured(cfg)
    training = task.training(cfg, open_dataset(cfg.data))
    if training.ds.fingerprint() != state["fingerprint"]:
        raise ConfigError(
            f"{run_dir}: the data in {cfg.data} changed since the run started; resuming would not "
            "be exact. Start a new run"
        )
    return _run(training, cfg, run_dir, on_epoch, resume=state)
