"""Output paths, checked before the work that fills them, and files written so that a full disk, a
crash or another user's account never meets a half-written or unreadable file.

``output_file`` / ``output_folder`` are called by every command that writes, before it predicts,
evaluates or trains: a path that cannot be written is refused in one line, naming the option and the
fix, not after minutes of work (``output_folder_for`` also removes a folder it made that a failed block
left empty). ``write_file`` replaces a file atomically; ``writing`` turns a full
disk (or a file-size or quota limit) into one ``InspektError``; ``shareable`` gives a folder or file
made by ``mkdtemp`` / ``mkstemp`` (owner-only) the permissions the umask allows, as ``mkdir`` would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from inspekt import storage
from inspekt.errors import InspektError

# ENOSPC: no space left; EFBIG: over the file-size limit (ulimit -f); EDQUOT: over the user's quota.
FULL_DISK = frozenset({errno.ENOSPC, errno.EFBIG, errno.EDQUOT})


def _named(target: object, option: str | None) -> str:
    return f"{option} {target}" if option else str(target)


def check_folder_writable(folder: Path, named: str) -> None:
    """Create ``folder`` (and its parents) and write a probe file in it: permission bits are not
    enough (root ignores them, a read-only mount or /proc does not).

    Args:
        folder: the local folder that will be written into.
        named: how messages name what is written there (``"--out model.inspekt"``).

    Raises:
        InspektError: ``folder`` is a file, or cannot be created or written in.
    """
    where = named if named.endswith(str(folder)) else f"{named}: {folder}"
    if folder.exists() and not folder.is_dir():
        raise InspektError(f"{where} is a file, not a folder; choose another path or remove the file")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".inspekt-probe-"):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise InspektError(f"{where}: cannot write there ({reason}); choose a writable path") from None


def output_file(
    path: str | os.PathLike[str] | storage.RemotePath, example: str, *, option: str | None = None
) -> Path | storage.RemotePath:
    """``path`` as a file that can be written (its folder created), checked before any work is done.

    Args:
        path: where the output will go: a local path or an fsspec URL (``s3://bucket/report.json``).
        example: a file name to suggest when ``path`` is a folder (e.g. ``"split.csv"``).
        option: the command-line option that named it (``"--json"``), for messages.

    Returns:
        The target as a ``Path``, or a ``storage.RemotePath`` for URLs (write it with ``write_text``).

    Raises:
        InspektError: ``path`` is a folder, its folder cannot be created or written, it is read-only,
            or (URLs) its bucket does not exist or cannot be reached.
    """
    target = storage.as_path(path)
    named = _named(target, option)
    if target.is_dir():
        raise InspektError(f"{named} is a folder; give a file name, e.g. {target / example}")
    if isinstance(target, storage.RemotePath):
        storage.check_writable(target)
        return target
    check_folder_writable(target.parent, named)
    if target.exists() and not os.access(target, os.W_OK):
        raise InspektError(f"{named}: no permission to write it; choose another path")
    return target


def output_folder(
    path: str | os.PathLike[str] | storage.RemotePath, *, option: str | None = None
) -> Path | storage.RemotePath:
    """``path`` as a folder that files can be written into (created now), checked before any work is done.

    Args:
        path: a local folder or an fsspec URL prefix (``s3://bucket/plots``).
        option: the command-line option that named it (``"--save-dir"``), for messages.

    Returns:
        The folder as a ``Path``, or a ``storage.RemotePath`` for URLs.

    Raises:
        InspektError: ``path`` is a file, cannot be created or written in, or (URLs) its bucket does not
            exist or cannot be reached.
    """
    target = storage.as_path(path)
    if isinstance(target, storage.RemotePath):
        if target.is_file():
            raise InspektError(f"{_named(target, option)} is a file, not a folder; choose another path")
        storage.check_writable(target, "write there")
        return target
    check_folder_writable(target, _named(target, option))
    return target


@contextlib.contextmanager
def output_folder_for(
    path: str | os.PathLike[str] | storage.RemotePath, *, option: str | None = None
) -> Iterator[Path | storage.RemotePath]:
    """``output_folder(path)`` for a block that fills it: if the block fails, the local folders that were
    created for it are removed again while still empty, so a refusal leaves no empty folder behind."""
    target = storage.as_path(path)
    made = None
    if not isinstance(target, storage.RemotePath):
        missing = [p for p in (target, *target.parents) if not p.exists()]
        made = missing[-1] if missing else None  # the topmost folder this call creates
    folder = output_folder(path, option=option)
    try:
        yield folder
    except BaseException:
        for empty in [target, *target.parents] if made is not None else []:
            try:
                empty.rmdir()  # only empty folders go
            except OSError:
                break
            if empty == made:
                break
        raise


def disk_full(exc: BaseException, path: object) -> InspektError | None:
    """The one-line error for a write that failed because the disk (or a size / quota limit) is full,
    or None when ``exc`` is another error."""
    if not isinstance(exc, OSError) or exc.errno not in FULL_DISK:
        return None
    where = f" {path}" if path else ""
    return InspektError(
        f"disk full while writing{where}: free space on that disk (or raise the file-size limit or quota) "
        f"and run again, or write elsewhere ({exc.strerror or exc})"
    )


@contextlib.contextmanager
def writing(path: object) -> Iterator[None]:
    """A block that writes ``path``: a full disk in it becomes ``disk_full``'s ``InspektError``."""
    try:
        yield
    except OSError as exc:
        error = disk_full(exc, path)
        if error is None:
            raise
        raise error from None


def write_file(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: under a hidden temporary name, then renamed, so a crash
    or a full disk leaves the previous file intact (the temporary one is removed).

    Raises:
        InspektError: the disk is full (see ``disk_full``).
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with writing(path):
        try:
            temporary.write_bytes(data)
            os.replace(temporary, path)
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
    return path


def _umask() -> int:
    with contextlib.suppress(OSError, ValueError):  # Linux: read it without changing it
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere reading the umask means setting it: put it back at once
    os.umask(mask)
    return mask


def shareable(path: str | os.PathLike[str]) -> Path:
    """Give a folder (or file) made by ``mkdtemp`` (``mkstemp``), which are owner-only, the permissions
    ``mkdir`` (``open``) would have given it: 0o777 (0o666) less the umask, so another account (the
    Docker image's user) can read a bundle or run folder written by this one."""
    path = Path(path)
    path.chmod((0o777 if path.is_dir() else 0o666) & ~_umask())
    return path
