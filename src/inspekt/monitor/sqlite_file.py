"""SQLite specifics of the monitoring history's file: checked before use, and removed again when the
monitor that created it could not start. Damaged files are never changed or deleted."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from sqlalchemy.engine import Engine

from inspekt.errors import ConfigError, one_line

__all__ = ["HistoryDamaged", "check_sqlite", "damaged", "discard_new_file"]


class HistoryDamaged(ConfigError):
    """The SQLite history file is damaged, or is no SQLite database at all; inspekt leaves it untouched."""


def damaged(file: Path, why: object) -> HistoryDamaged:
    """The error for a damaged SQLite history ``file``: what is wrong and what to do, in one line."""
    return HistoryDamaged(
        f"{file}: this monitoring history is damaged or is not a SQLite database ({one_line(why)}); inspekt "
        "never changes or deletes it: move it aside (or restore it from a backup) and start the monitor "
        "again, which begins a new history at that path"
    )


def check_sqlite(file: Path) -> None:
    """Check an existing SQLite history file (``PRAGMA quick_check``) before anything reads or writes it.

    Raises:
        HistoryDamaged: the file is damaged or is not a SQLite database.
    """
    if not file.is_file() or file.stat().st_size == 0:  # nothing yet, or an empty (valid) database
        return
    try:
        with closing(sqlite3.connect(file, timeout=10)) as connection:
            problems = [row[0] for row in connection.execute("PRAGMA quick_check")]
    except sqlite3.DatabaseError as exc:  # e.g. "file is not a database", "database disk image is malformed"
        raise damaged(file, exc) from None
    if problems != ["ok"]:
        raise damaged(file, problems[0])


def discard_new_file(engine: Engine, created: Path | None) -> None:
    """Close the engine and delete the SQLite file (and its WAL companions) that opening it created:
    a monitor that fails to start leaves no empty history behind."""
    engine.dispose()
    if created is not None:
        for path in (created, created.with_name(created.name + "-wal"), created.with_name(created.name + "-shm")):
            path.unlink(missing_ok=True)
