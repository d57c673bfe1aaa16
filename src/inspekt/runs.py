"""Run folders: ``<out>/<task>/<name>``, with an incrementing suffix unless ``exist_ok``."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import ConfigError

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
        raise ConfigError(f"cannot create the run folder under {out!s}: {exc.strerror or exc}; choose another --out") from exc
    candidate, number = parent / name, 2
    while True:
        try:  # mkdir is atomic: two runs started at once never share a folder
            candidate.mkdir(exist_ok=exist_ok)
            return candidate
        except FileExistsError:
            candidate, number = parent / f"{name}{number}", number + 1
