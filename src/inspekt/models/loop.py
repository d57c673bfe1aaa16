"""The one training loop, for every network inspekt trains: classifiers, segmenters and the anomaly
methods that learn by gradient descent (DRAEM, AE-SSIM, template-ratio's variant classifier).

An ``Objective`` says what to optimise (network, batches, loss, optimiser, schedule, validation);
``run_loop`` runs it the same way for all of them:

* every epoch draws its batch order and augmentations from seeds derived from (seed, epoch), so a
  run resumed from its last checkpoint continues exactly as if it had never stopped;
* mixed precision on CUDA (``amp``), a gradient scaler, the schedule stepped per batch;
* the network trains channels-last (NHWC: oneDNN's convolutions are ~15-25 % faster on CPU) and is
  returned, with every kept state, in the ordinary contiguous layout (safetensors, ONNX export);
* validation after every epoch when the objective has one, and the best epoch kept by its
  ``monitor`` (ties broken by the lower validation loss); early stop after ``patience`` epochs
  without improvement;
* Ctrl-C keeps the best epoch so far (``interrupted``), never a half-trained network;
* a progress step per epoch that counts its batches (``inspekt.progress``: a bar on a terminal),
  one progress row per epoch, and the state after each epoch to ``checkpoint`` (the run folder's
  ``last.pt``, written by the caller), from which ``resume`` continues.

The loop knows no files, tasks or fronts: the caller gives it hooks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from inspekt.errors import NothingTrained, TrainingDiverged
from inspekt.progress import step

EpochRow = dict[str, Any]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch's randomness (torch, augmentation), derived from the run's seed."""
    return (seed * 1_000_003 + epoch) % 2**31


@dataclass
class Objective:
    """One network's optimisation.

    Attributes:
        network: what is optimised, checkpointed and returned in its best (or last) state.
        batches: ``(epoch, rng) -> iterable of batches`` for one epoch; ``rng`` is seeded by (seed, epoch).
        loss: ``batch -> scalar tensor`` (computed under autocast when ``amp`` is on).
        epochs: the most epochs to run.
        optimizer: ``parameters -> torch optimiser``.
        schedule: ``(optimiser, total steps) -> scheduler`` stepped after every batch, or None.
        steps_per_epoch: batches per epoch (sizes the schedule).
        validate: ``() -> metrics`` after every epoch (must hold ``loss``), or None.
        keys: the validation metrics that go into each epoch row (as ``val_<key>``), beside its loss.
        monitor: the epoch-row key that picks the best epoch (``val_loss``, ``val_<metric>``,
            ``train_loss``); a missing value falls back to the validation (else training) loss.
        higher_is_better: whether a larger ``monitor`` is better.
        patience: stop after this many epochs without a better one (None: run every epoch).
        keep: "best" (the best epoch's weights) or "last" (the final weights, for objectives whose
            loss is not a measure of quality, such as a one-cycle schedule on synthetic anomalies).
        seed: the run's seed.
        device: where to compute.
        amp: mixed precision (CUDA only; ignored elsewhere).
        name: what is trained, in progress rows of methods that train more than one network.
    """

    network: nn.Module
    batches: Callable[[int, np.random.Generator], Iterable[Any]]
    loss: Callable[[Any], torch.Tensor]
    epochs: int
    optimizer: Callable[[Iterable[nn.Parameter]], torch.optim.Optimizer]
    schedule: Callable[[torch.optim.Optimizer, int], Any] | None = None
    steps_per_epoch: int = 1
    validate: Callable[[], dict[str, Any]] | None = None
    keys: tuple[str, ...] = ()
    monitor: str = "train_loss"
    higher_is_better: bool = False
    patience: int | None = None
    keep: str = "best"
    seed: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    amp: bool = False
    name: str = ""


@dataclass
class LoopHooks:
    """What the caller does around the loop: show progress, save checkpoints, resume."""

    on_epoch: Callable[[EpochRow], None] | None = None
    checkpoint: Callable[[dict[str, Any]], None] | None = None
    resume: dict[str, Any] | None = None


@dataclass
class LoopResult:
    """What a loop produced: the per-epoch rows, the kept weights and whether Ctrl-C ended it."""

    history: list[EpochRow]
    state: dict[str, torch.Tensor]
    best_epoch: int
    interrupted: bool = False
    diverged: TrainingDiverged | None = None  # ended by a non-finite loss; the state is the best epoch before


class _Run:
    """The loop's state: network, optimiser, schedule, scaler, history and the best epoch so far."""

    def __init__(self, objective: Objective):
        self.o = objective
        self.network = objective.network.to(objective.device, memory_format=torch.channels_last)
        self.optimizer = objective.optimizer(self.network.parameters())
        total = max(1, objective.epochs * objective.steps_per_epoch)
        self.scheduler = objective.schedule(self.optimizer, total) if objective.schedule else None
        self.amp = objective.amp and objective.device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.history: list[EpochRow] = []
        self.best_key: tuple[float, float] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stale, self.epoch = 0, 0

    def state(self, finished: bool) -> dict[str, Any]:
        parts = {"model": self.network, "optimizer": self.optimizer, "scaler": self.scaler}
        state = {name: part.state_dict() for name, part in parts.items()}
        state["scheduler"] = self.scheduler.state_dict() if self.scheduler else None
        return state | {
            "history": self.history,
            "stale": self.stale,
            "epoch": self.epoch,
            "finished": finished,
            "best_key": list(self.best_key) if self.best_key else None,
            "best_model": self.best_state,
        }

    def load(self, state: dict[str, Any]) -> None:
        self.network.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        self.history, self.stale, self.epoch = state["history"], state["stale"], state["epoch"]
        self.best_key = tuple(state["best_key"]) if state["best_key"] else None
        self.best_state = state["best_model"]

    def train_epoch(self, epoch: int) -> float:
        torch.manual_seed(epoch_seed(self.o.seed, epoch))
        rng = np.random.default_rng([self.o.seed, epoch])
        self.network.train()
        losses = []
        name = f"{self.o.name}: " if self.o.name else ""
        with step(f"{name}epoch {epoch}/{self.o.epochs}", self.o.steps_per_epoch, announce=False) as advance:
            for batch in self.o.batches(epoch, rng):
                with torch.autocast(self.o.device.type, dtype=torch.float16, enabled=self.amp):
                    loss = self.o.loss(batch)
                self.optimizer.zero_grad(set_to_none=True)
                self.scaler.scale(loss).backward()
                self.scaler.step(self.optimizer)
                self.scaler.update()
                if self.scheduler is not None:
                    self.scheduler.step()
                losses.append(loss.item())
                advance()
        self._check_finite(epoch, losses)
        return float(np.mean(losses))

    def _check_finite(self, epoch: int, losses: list[float]) -> None:
        """Stop the run when the loss or the weights are no longer finite (before validating on them)."""
        bad = [value for value in losses if not np.isfinite(value)]
        state = self.network.state_dict().values()  # weights and buffers (batch-norm statistics)
        if bad or not all(bool(torch.isfinite(t).all()) for t in state if t.is_floating_point()):
            self.diverged(epoch, f"loss {bad[0]}" if bad else "the weights became nan")

    def diverged(self, epoch: int, what: str) -> None:
        """Stop the run: the loss, the weights or the validation loss are no longer finite."""
        name = f"{self.o.name}: " if self.o.name else ""
        raise TrainingDiverged(
            f"{name}training diverged at epoch {epoch} ({what}): the learning rate is too high for this data "
            "(lower lr) or the inputs hold NaN",
            epoch=epoch,
            what=what,
        )

    def end_epoch(self, row: EpochRow) -> bool:
        """Record an epoch; returns True when it is the best so far."""
        self.history.append(row)
        key = self._key(row)
        better = self.best_key is None or key > self.best_key
        if better:
            self.best_key, self.stale = key, 0
            self.best_state = _copy(self.network)
        else:
            self.stale += 1
        return better

    def _key(self, row: EpochRow) -> tuple[float, float]:
        loss = row.get("val_loss", row["train_loss"])
        value = row.get(self.o.monitor)
        if value is None:  # e.g. ROC-AUC undefined on a one-class validation split: fall back to the loss
            return -loss, -loss
        return (value if self.o.higher_is_better else -value), -loss


def _copy(network: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU copy of the network's state in the contiguous layout (it trains channels-last)."""
    return {k: v.detach().cpu().clone(memory_format=torch.contiguous_format) for k, v in network.state_dict().items()}


def _row(epoch: int, train_loss: float, metrics: dict[str, Any], lr: float, seconds: float, o: Objective) -> EpochRow:
    row: EpochRow = {"epoch": epoch, "train_loss": round(train_loss, 6)}
    if metrics:
        row["val_loss"] = round(float(metrics["loss"]), 6)
        row |= {f"val_{k}": round(float(metrics[k]), 6) for k in o.keys if metrics.get(k) is not None}
    row |= {"lr": lr, "seconds": round(seconds, 3)}
    return row | ({"network": o.name} if o.name else {})


def run_loop(objective: Objective, hooks: LoopHooks | None = None) -> LoopResult:
    """Run an objective to its end, its early stop or Ctrl-C (see the module docstring).

    Args:
        objective: what to optimise.
        hooks: progress, checkpoint and resume (None: none of them).

    Returns:
        The epoch rows and the kept weights (also loaded into ``objective.network``).

    Raises:
        NothingTrained: interrupted before the first epoch finished.
        TrainingDiverged: the loss or the weights became NaN or infinite before an epoch finished well
            (after one did, the loop stops and keeps the best epoch, with ``diverged`` set).
    """
    hooks = hooks or LoopHooks()
    run = _Run(objective)
    if hooks.resume:
        run.load(hooks.resume)
    interrupted, diverged = False, None
    last = run.epoch if hooks.resume and hooks.resume["finished"] else objective.epochs  # finished: bundle it again
    try:
        for epoch in range(run.epoch + 1, last + 1):
            t0, lr = time.perf_counter(), run.optimizer.param_groups[0]["lr"]
            train_loss = run.train_epoch(epoch)
            metrics = objective.validate() if objective.validate else {}
            if metrics and not np.isfinite(metrics["loss"]):  # huge but finite weights can still overflow
                run.diverged(epoch, f"validation loss {metrics['loss']}")
            run.epoch = epoch
            best = run.end_epoch(_row(epoch, train_loss, metrics, lr, time.perf_counter() - t0, objective))
            finished = epoch == objective.epochs or (objective.patience is not None and run.stale >= objective.patience)
            if hooks.checkpoint:
                hooks.checkpoint(run.state(finished))
            if hooks.on_epoch:
                hooks.on_epoch(run.history[-1] | {"epochs": objective.epochs, "best": best})
            if finished:
                break
    except KeyboardInterrupt:
        interrupted = True
        if run.best_state is None:
            raise NothingTrained("interrupted before the first epoch finished; nothing to keep") from None
    except TrainingDiverged as exc:  # the last checkpoint stays the last good epoch: keep the best one
        if run.best_state is None:
            raise
        diverged = exc
    keep_last = objective.keep == "last" and not interrupted and diverged is None
    state = _copy(run.network) if keep_last else run.best_state
    run.network.to(memory_format=torch.contiguous_format).load_state_dict(state)
    best_epoch = run.epoch if keep_last else max(run.history, key=run._key)["epoch"]
    return LoopResult(run.history, state, best_epoch, interrupted, diverged)
