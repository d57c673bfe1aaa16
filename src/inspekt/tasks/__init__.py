"""THE task registry: each task's name -> the ``Task`` object that knows everything about it.

Adding a task is one folder (``inspekt/tasks/<name>/``, a ``Task`` subclass in its ``__init__``) and
one row here. Nothing outside this package compares task names: the modes look the task up.
"""

from __future__ import annotations

from inspekt.errors import ConfigError, did_you_mean
from inspekt.tasks.anomaly import Anomaly
from inspekt.tasks.base import Task
from inspekt.tasks.classify import Classify
from inspekt.tasks.detect import Detect
from inspekt.tasks.segment import Segment

TASKS: dict[str, Task] = {task.name: task for task in (Classify(), Segment(), Anomaly(), Detect())}


def get_task(name: str) -> Task:
    """The task called ``name``.

    Raises:
        ConfigError: no such task (the message lists them, with a did-you-mean).
    """
    try:
        return TASKS[name]
    except KeyError:
        raise ConfigError(
            f"unknown task {name!r} (known: {', '.join(TASKS)}).{did_you_mean(str(name), TASKS)}"
        ) from None


def tasks_for(ds) -> tuple[str, ...]:
    """The tasks a dataset can train (``Task.fits``), in registry order."""
    return tuple(name for name, task in TASKS.items() if task.fits(ds))


def thresholds_text(card) -> str:
    """The thresholds the task lets a person move (the workbench's sliders), at the card's values: what
    every front says decided a result."""
    controls = get_task(card.task).controls(card)
    return ", ".join(f"{c.label.lower()} {c.value:.4g}" for c in controls) or "none (the highest score decides)"


__all__ = ["TASKS", "Task", "get_task", "tasks_for", "thresholds_text"]
