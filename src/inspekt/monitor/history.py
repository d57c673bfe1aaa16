"""The monitoring history: one row per image, one per drift window, one per alert delivery.

SQLAlchemy 2 Core over any database URL: SQLite (WAL journal, the default, in the workspace) or
PostgreSQL (``postgresql+psycopg://user@host/db``). Every write is one transaction, and the
unique key ``(source, item)`` on images is what makes a restart after a crash safe: an image is
either fully recorded or not at all, and a recorded one is never taken again.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import ArgumentError, IntegrityError, NoSuchModuleError, SQLAlchemyError

from inspekt.errors import ConfigError
from inspekt.monitor.sqlite_file import check_sqlite

DEFAULT_DB_NAME = "monitor.db"
metadata = MetaData()

images = Table(
    "monitor_images",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("source", String(1024), nullable=False),
    Column("item", String(1024), nullable=False),  # file path relative to the drop folder, or frame / snapshot number
    Column("model", String(1024), nullable=False),
    Column("status", String(16), nullable=False),  # ok | skipped
    Column("reason", Text),  # why a skipped item could not be read
    Column("label", String(256)),
    Column("score", Float),
    Column("verdict", String(256)),
    Column("scores", JSON),  # per-class probabilities (classify) or per-defect-class maxima (segment)
    Column("properties", JSON),  # the drift properties of the image (NaN stored as null)
    Column("histogram", JSON),  # {channel: 256 pixel counts}, so a window's drift can be rebuilt from the database
    Column("size", BigInteger),  # a drop-folder file's size and modification time when it was read: a skipped
    Column("mtime_ns", BigInteger),  # file that changes since (a writer that paused mid-write) is read again
    Column("outputs", JSON),  # the prediction's other tested numbers (a detector's box count and size)
    Column("ood", JSON),  # the Predictor's {"score", "unlike_training"[, "why"]}: is the image unlike the training ones
    UniqueConstraint("source", "item", name="uq_monitor_images_source_item"),
)

windows = Table(
    "monitor_windows",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("source", String(1024), nullable=False),
    Column("model", String(1024), nullable=False),
    Column("first_image", Integer, nullable=False),
    Column("last_image", Integer, nullable=False),
    Column("n", Integer, nullable=False),
    Column("drift", Boolean, nullable=False),
    Column("drift_score", Float),  # the domain classifier's score max(2 AUC - 1, 0), when it ran
    Column("drifted", JSON),  # names of the drifted checks
    Column("checks", JSON),  # {check: {p_adjusted, effect, min_effect, drifted}}
    Column("label_mix", JSON),  # {label: share} in the window
    Column("notes", JSON),
    UniqueConstraint("source", "model", "last_image", name="uq_monitor_windows_last"),
)

alerts = Table(
    "monitor_alerts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("time", DateTime(timezone=True), nullable=False),
    Column("window_id", Integer, ForeignKey("monitor_windows.id"), nullable=False),
    Column("channel", String(16), nullable=False),  # log | webhook
    Column("target", String(1024)),
    Column("status", String(16), nullable=False),  # delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("error", Text),
)


def now() -> datetime:
    """The current time in UTC (what every row records)."""
    return datetime.now(UTC)


def iso_time(value: Any) -> str | None:
    """A recorded time as ISO 8601 with its zone: SQLite gives back the UTC time without one."""
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    return None if value is None else str(value)


def default_url(workspace: str | os.PathLike | None = None) -> str:
    """``sqlite:///<workspace>/monitor.db`` (workspace: ``$INSPEKT_WORKSPACE`` or ``./workspace``).

    Raises:
        ConfigError: the workspace is a storage URL (``s3://...``), where no SQLite file can live.
    """
    from inspekt.storage import as_path, is_remote

    root = workspace or os.environ.get("INSPEKT_WORKSPACE", "workspace")
    if is_remote(root):  # Path() would turn it into a local folder named "s3:"
        raise ConfigError(
            f"workspace {root}: the monitoring history is a database and cannot live at a storage "
            "URL; give --db with a local SQLite file or a database URL (postgresql+psycopg://...)"
        )
    return f"sqlite:///{Path(as_path(root)).resolve() / DEFAULT_DB_NAME}"


def as_url(db: str | os.PathLike | None) -> str:
    """A database URL from what a user typed: a URL as is, a plain path as a SQLite file, None as the default."""
    if db is None or str(db).strip() == "":
        return default_url()
    text = str(db)
    return text if "://" in text else f"sqlite:///{Path(text).resolve()}"


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///`` URL (``as_url``'s form); None for other databases."""
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL: the app can read while the monitor writes; NORMAL sync is durable at each commit in WAL mode
    # except for power loss, which is the usual trade-off; busy_timeout rides out a concurrent reader.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def open_engine(db: str | os.PathLike | None, *, create: bool = True) -> Engine:
    """Connect to the history database and create its tables when ``create``.

    Args:
        db: a SQLAlchemy URL, a SQLite file path, or None for the workspace's ``monitor.db``.
        create: create missing tables (the monitor); False for readers (report, app).

    Returns:
        The engine.

    Raises:
        ConfigError: the URL is malformed, its driver is not installed, or the database cannot be reached.
        HistoryDamaged: the SQLite file is damaged or is not a SQLite database.
    """
    url = as_url(db)
    file = sqlite_file(url)
    if file is not None and file.is_dir():
        raise ConfigError(f"--db {file}: is a folder; give the history's file, e.g. {file / DEFAULT_DB_NAME}")
    if file is not None and create:
        file.parent.mkdir(parents=True, exist_ok=True)
    elif file is not None and not file.is_file():
        raise ConfigError(
            f"{url}: no monitoring history there yet; start one with "
            "`inspekt monitor --model M --source SOURCE --db URL`"
        )
    if file is not None:
        check_sqlite(file)
    try:
        engine = create_engine(url, future=True, pool_pre_ping=True)
    except ImportError as exc:
        raise ConfigError(
            f"--db {safe_url(url)}: its database driver is not installed ({exc}); for PostgreSQL "
            "install psycopg (the inspekt 'postgres' extra) and use postgresql+psycopg://..."
        ) from None
    except (ArgumentError, NoSuchModuleError, ValueError) as exc:
        raise ConfigError(
            f"--db {safe_url(url)!r}: not a usable database URL ({short_error(exc)}); give e.g. "
            "sqlite:///monitor.db or postgresql+psycopg://user:password@host:5432/dbname"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    try:
        if create:
            metadata.create_all(engine)
            _add_columns(engine)
        else:
            with engine.connect() as connection:
                connection.execute(select(func.count()).select_from(images))
    except SQLAlchemyError as exc:
        engine.dispose()
        what = "cannot create the history tables in" if create else "cannot read monitoring history from"
        raise ConfigError(
            f"--db {safe_url(url)}: {what} this database ({short_error(exc)}); check the URL, that the "
            "server is running and that the user may connect"
        ) from None
    return engine


ADDED_COLUMNS = {"size": "BIGINT", "mtime_ns": "BIGINT", "outputs": "JSON", "ood": "JSON"}  # newer than the first


def _add_columns(engine: Engine) -> None:
    """Give a history made before some columns existed those columns (its rows keep null there)."""
    have = {column["name"] for column in inspect(engine).get_columns(images.name)}
    with engine.begin() as connection:
        for name, kind in ADDED_COLUMNS.items():
            if name not in have:
                connection.exec_driver_sql(f"ALTER TABLE {images.name} ADD COLUMN {name} {kind}")


def short_error(exc: Exception) -> str:
    """A driver error in one short line (the driver's own message, not SQLAlchemy's wrapper)."""
    return " ".join(str(getattr(exc, "orig", None) or exc).split())[:200]


def safe_url(url: str) -> str:
    """The URL with its password hidden (it goes into messages and logs)."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return url


@dataclass
class ImageRow:
    """What is recorded about one image (``status`` ok) or one unreadable item (``status`` skipped)."""

    source: str
    item: str
    model: str
    status: str = "ok"
    reason: str | None = None
    label: str | None = None
    score: float | None = None
    verdict: str | None = None
    scores: dict[str, float] | None = None
    properties: dict[str, float | None] | None = None
    histogram: dict[str, list[int]] | None = None
    size: int | None = None
    mtime_ns: int | None = None
    outputs: dict[str, float | None] | None = None
    ood: dict[str, Any] | None = None


def record_image(engine: Engine, row: ImageRow, replace_skipped: bool = False) -> int | None:
    """Insert one image row in its own transaction.

    Args:
        engine: the history.
        row: what to record.
        replace_skipped: the item was recorded ``skipped`` and is read again (its file changed since):
            that row is replaced by this one, under the same key and a new id, in the same transaction.

    Returns:
        The new row's id, or None when ``(source, item)`` was already recorded (nothing changes).
    """
    values = {**row.__dict__, "time": now()}
    key = (images.c.source == row.source) & (images.c.item == row.item)
    try:
        with engine.begin() as connection:
            if replace_skipped:
                connection.execute(delete(images).where(key & (images.c.status == "skipped")))
            return connection.execute(insert(images).values(**values)).inserted_primary_key[0]
    except IntegrityError:
        return None


def skipped_files(engine: Engine, source: str) -> dict[str, tuple[int, int] | None]:
    """The skipped items of ``source``: their file's (size, mtime_ns) when read (None: not recorded)."""
    query = select(images.c.item, images.c.size, images.c.mtime_ns).where(
        images.c.source == source, images.c.status == "skipped"
    )
    with engine.connect() as connection:
        return {
            item: None if size is None or mtime is None else (size, mtime)
            for item, size, mtime in connection.execute(query)
        }


def recorded_items(engine: Engine, source: str) -> set[str]:
    """The items of ``source`` already in the history (ok or skipped)."""
    with engine.connect() as connection:
        return set(connection.scalars(select(images.c.item).where(images.c.source == source)))


def count_items(engine: Engine, source: str) -> int:
    """How many items of ``source`` the history holds."""
    with engine.connect() as connection:
        return int(connection.scalar(select(func.count()).select_from(images).where(images.c.source == source)))


def pending_rows(engine: Engine, source: str, model: str, limit: int) -> list[Any]:
    """The first ``limit`` readable images of ``source`` / ``model`` after the last drift window, oldest first."""
    with engine.connect() as connection:
        last = (
            connection.scalar(
                select(func.max(windows.c.last_image)).where(windows.c.source == source, windows.c.model == model)
            )
            or 0
        )
        query = (
            select(images)
            .where(images.c.source == source, images.c.model == model, images.c.status == "ok", images.c.id > last)
            .order_by(images.c.id)
            .limit(limit)
        )
        return list(connection.execute(query))


def record_window(engine: Engine, values: dict[str, Any]) -> int | None:
    """Insert one window row; None when that window was already recorded (a concurrent or earlier run)."""
    try:
        with engine.begin() as connection:
            return connection.execute(insert(windows).values(time=now(), **values)).inserted_primary_key[0]
    except IntegrityError:
        return None


def unalerted_windows(engine: Engine, source: str, model: str, channel: str, unless: str | None = None) -> list[Any]:
    """Drifted windows of ``source`` / ``model`` with no ``channel`` alert recorded (e.g. the monitor
    was killed between recording the window and alerting), nor, when given, an ``unless`` alert."""
    done = select(alerts.c.window_id).where(alerts.c.channel.in_([channel, unless] if unless else [channel]))
    query = (
        select(windows)
        .where(
            windows.c.source == source, windows.c.model == model, windows.c.drift.is_(True), windows.c.id.not_in(done)
        )
        .order_by(windows.c.id)
    )
    with engine.connect() as connection:
        return list(connection.execute(query))


def record_alert(
    engine: Engine,
    window_id: int,
    channel: str,
    target: str | None,
    status: str,
    attempts: int,
    error: str | None = None,
) -> None:
    """Insert one alert-delivery row."""
    with engine.begin() as connection:
        connection.execute(
            insert(alerts).values(
                time=now(),
                window_id=window_id,
                channel=channel,
                target=target,
                status=status,
                attempts=attempts,
                error=error,
            )
        )


def dumps(value: Any) -> str:
    """Compact JSON (for log lines and webhook bodies)."""
    return json.dumps(value, default=str, separators=(",", ":"))
