"""Where user paths live: local files (pathlib, unchanged) or any fsspec URL (``s3://``, ``memory://`` ...).

This package is the one place that knows about fsspec. ``as_path`` turns whatever a user typed
into either a ``pathlib.Path`` (local paths and ``file://`` URLs, so local work never pays for
fsspec) or a ``RemotePath`` (``remote.py``): a small stand-in for ``Path`` with the operations
inspekt uses (joining, names, listing, reading and writing bytes), backed by an fsspec filesystem.
Library code keeps calling ``path / "card.json"``, ``path.is_dir()`` or ``path.read_bytes()`` and
works on both.

Credentials and endpoints come from the filesystem's usual configuration (for S3: the AWS
environment variables, ``~/.aws`` files, ``AWS_ENDPOINT_URL`` or ``FSSPEC_S3_ENDPOINT_URL``).
Failures a user can fix (no credentials, unreachable endpoint, access denied, s3fs missing) become
one-line ``StorageError`` messages naming the URL and the fix.
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from inspekt.storage.remote import _URL, RemotePath, StorageError, _errors, _filesystem, protocol_of

__all__ = [
    "RemotePath",
    "StorageError",
    "as_path",
    "check_writable",
    "entry_path",
    "glob_paths",
    "is_remote",
    "is_url",
    "list_files",
    "read_ahead",
    "rebase",
    "relative_text",
    "staged_folder",
    "upload_folder",
]

AnyPath = Path | RemotePath

# pathlib collapses "s3://b/k" to "s3:/b/k"; CLI options typed as Path arrive in that form.
_COLLAPSED = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):/(?!/)")
_LOCAL_PROTOCOLS = ("file", "local")


def _known_protocol(name: str) -> bool:
    from fsspec.registry import known_implementations, registry

    return name in known_implementations or name in registry


def _url_text(value: object) -> str | None:
    """The URL spelled by ``value`` (repairing pathlib's collapsed form), or None for a local path."""
    if isinstance(value, RemotePath):
        return str(value)
    if not isinstance(value, (str, os.PathLike)):
        return None
    text = os.fspath(value)
    if not isinstance(text, str) or ":/" not in text[:32]:
        return None  # fast path: every ordinary local path
    if _URL.match(text):
        return text
    found = _COLLAPSED.match(text)
    if found and found.group(1).lower() not in _LOCAL_PROTOCOLS and _known_protocol(found.group(1).lower()):
        return f"{found.group(1)}://{text[found.end() :]}"
    return None


def is_url(value: object) -> bool:
    """Whether ``value`` is an fsspec URL (``scheme://...``) rather than a local path.

    Args:
        value: a string, ``os.PathLike`` or ``RemotePath``.

    Returns:
        True for URLs, including ``file://``.
    """
    return _url_text(value) is not None


def is_remote(value: object) -> bool:
    """Whether ``value`` names something that is not a plain local file (a non-``file://`` URL)."""
    if isinstance(value, RemotePath):
        return True
    text = _url_text(value)
    return text is not None and _URL.match(text).group(1).lower() not in _LOCAL_PROTOCOLS


def source_text(value: str | os.PathLike[str] | RemotePath) -> str:
    """How a model card records the data it came from: a remote URL as written, a local path (or
    ``file://`` URL) as an absolute path, ``~`` expanded (a relative one names other data, or none, from
    another working folder); ``as_path`` opens either again."""
    path = as_path(value)
    return str(path) if isinstance(path, RemotePath) else os.path.abspath(os.path.expanduser(path))


def same_source(a: str | os.PathLike[str] | RemotePath, b: str | os.PathLike[str] | RemotePath) -> bool:
    """Whether two data sources name the same place: URLs as written (less a trailing slash), local paths
    after ``~`` and symbolic links are resolved; a URL never equals a local path."""
    try:
        first, second = as_path(a), as_path(b)
    except StorageError:  # a protocol this install cannot open: compare as written
        return str(a).rstrip("/") == str(b).rstrip("/")
    if isinstance(first, RemotePath) or isinstance(second, RemotePath):
        return str(first) == str(second)
    return first.expanduser().resolve() == second.expanduser().resolve()


def as_path(value: str | os.PathLike[str] | RemotePath) -> AnyPath:
    """A ``Path`` for local paths and ``file://`` URLs, a ``RemotePath`` for every other URL.

    Args:
        value: what the user gave.

    Returns:
        The path object to work with; a ``Path`` given in is returned as it is (``~`` expanded).

    Raises:
        StorageError: the URL's protocol is unknown or its driver (e.g. s3fs) is not installed.
    """
    if isinstance(value, RemotePath):
        return value
    text = _url_text(value)
    if text is None:
        path = value if isinstance(value, Path) else Path(value)
        return path.expanduser() if str(path).startswith("~") else path  # a quoted "~/x", or one typed in the app
    protocol = _URL.match(text).group(1).lower()
    if protocol in _LOCAL_PROTOCOLS:
        return Path(text[len(protocol) + 3 :])
    return RemotePath.from_url(text)


def list_files(root: RemotePath) -> list[RemotePath]:
    """Every file below ``root`` (recursively), skipping hidden files and folders (names starting with '.').

    Args:
        root: a remote folder (prefix).

    Returns:
        The files, sorted by URL.
    """
    found = []
    for path in root.find():
        relative = path.relative_to(root).parts
        if not any(part.startswith(".") for part in relative):
            found.append(path)
    return sorted(found)


def check_writable(target: RemotePath, what: str = "write it") -> None:
    """Fail now, with the reason, when ``target`` cannot be written because its bucket is missing.

    Args:
        target: a remote file or folder about to be written.
        what: the action, for the message ("upload the run folder").

    Raises:
        StorageError: the bucket does not exist (or the store cannot be reached).
    """
    if not target.parent.exists() and "no such bucket" in (reason := target.missing_reason()):
        raise StorageError(f"{target}: cannot {what}: {reason}")


def upload_folder(local: str | os.PathLike[str], target: RemotePath) -> list[RemotePath]:
    """Copy every file under a local folder to ``target``, keeping the layout below it.

    Args:
        local: the folder to copy.
        target: where its contents go (``local/a/b.png`` -> ``target/a/b.png``).

    Returns:
        The remote files written.

    Raises:
        StorageError: the bucket is missing, or the store refuses or cannot be reached.
    """
    check_writable(target, "upload there")
    base, written = Path(local), []
    for file in sorted(p for p in base.rglob("*") if p.is_file()):
        destination = target / file.relative_to(base).as_posix()
        with _errors(str(destination)):
            target.fs.put_file(str(file), destination.path)
        written.append(destination)
    return written


def download_folder(source: RemotePath, local: str | os.PathLike[str]) -> list[Path]:
    """Copy every file below a remote folder into ``local``, keeping the layout (``upload_folder``'s inverse).

    Raises:
        StorageError: the store refuses or cannot be reached.
    """
    base, written = Path(local), []
    for file in list_files(source):
        destination = base / file.relative_to(source)
        destination.parent.mkdir(parents=True, exist_ok=True)
        with _errors(str(file)):
            source.fs.get_file(file.path, str(destination))
        written.append(destination)
    return written


@contextlib.contextmanager
def staged_folder(target: str | os.PathLike[str] | RemotePath, prefix: str = "inspekt-") -> Iterator[Path]:
    """A local folder to write into that ends up at ``target``.

    Local targets are used directly (created if needed). For remote targets the work happens in a
    temporary folder, uploaded to ``target`` when the block ends without an error, then removed.

    Args:
        target: the folder the user asked for.
        prefix: the temporary folder's name prefix.

    Returns:
        A context manager yielding the local folder to write into.
    """
    where = as_path(target)
    if isinstance(where, Path):
        where.mkdir(parents=True, exist_ok=True)
        yield where
        return
    check_writable(where, "write there")  # before the work, not after it
    temporary = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield temporary
        upload_folder(temporary, where)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)


def rebase(path: str | os.PathLike[str], local: Path, target: str | os.PathLike[str] | RemotePath) -> AnyPath:
    """Where a file written under a staged ``local`` folder ends up below ``target``."""
    where = as_path(target)
    relative = Path(path).relative_to(local)
    return where / relative.as_posix() if isinstance(where, RemotePath) else where / relative


READ_AHEAD = 16  # remote objects fetched in parallel ahead of the consumer: hides per-request latency


class _NamedBytes(io.BytesIO):
    """Fetched bytes that still carry the URL they came from (``load_image`` names errors by it)."""

    def __init__(self, data: bytes, name: str):
        super().__init__(data)
        self.name = name


def _fetch(source: Any) -> Any:
    try:
        return _NamedBytes(as_path(source).read_bytes(), str(as_path(source)))
    except Exception:  # the consumer reads it again and reports the problem in its own words
        return source


def read_ahead(sources: Iterable[Any], window: int = READ_AHEAD) -> Iterator[Any]:
    """The sources in order, each remote one replaced by its bytes (a named in-memory stream).

    Up to ``window`` remote objects are fetched in parallel threads ahead of the consumer, so the
    network latency of one GET overlaps the decoding of earlier images. Local paths, bytes and
    streams pass through untouched (and no thread is started for them). A remote object that
    cannot be fetched is passed on as its URL, so the reader raises its usual message.

    Args:
        sources: paths, URLs, ``RemotePath`` objects, bytes or streams.
        window: how many remote objects may be in flight at once.

    Returns:
        An iterator of the sources, remote ones as ``io.BytesIO`` objects whose ``name`` is the URL.
    """
    from concurrent.futures import ThreadPoolExecutor

    pending: deque[tuple[bool, Any]] = deque()  # (fetching?, future or the source itself)
    pool = None
    try:
        for source in sources:
            if is_remote(source):
                pool = pool or ThreadPoolExecutor(max_workers=window, thread_name_prefix="inspekt-read")
                pending.append((True, pool.submit(_fetch, source)))
            else:
                pending.append((False, source))
            while len(pending) > window or (pending and not pending[0][0]):
                fetching, head = pending.popleft()
                yield head.result() if fetching else head
        while pending:
            fetching, head = pending.popleft()
            yield head.result() if fetching else head
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def glob_paths(pattern: str) -> list[str]:
    """The files matching a glob pattern (``**`` recursive), local or remote (``s3://b/day*/*.png``).

    Args:
        pattern: a local glob pattern or an fsspec URL with wildcards.

    Returns:
        Sorted matches, as strings (URLs for remote patterns).
    """
    import glob

    if not is_remote(pattern):
        return sorted(glob.glob(pattern, recursive=True))
    fs, path = _filesystem(_url_text(pattern))
    with _errors(pattern):
        found = fs.glob(path, detail=True)  # types come with the listing: no request per match to tell files apart
    return sorted(fs.unstrip_protocol(p) for p, info in found.items() if info.get("type") == "file")


def relative_text(path: str | os.PathLike[str] | RemotePath, base: Path | RemotePath) -> str:
    """``path`` relative to the folder ``base`` for a file listing (e.g. a split CSV), with '/' separators.

    Local paths are resolved first; a path on another filesystem than ``base`` stays absolute (its URL).
    """
    target = as_path(path)
    if isinstance(target, RemotePath) != isinstance(base, RemotePath):
        return str(target) if isinstance(target, RemotePath) else target.resolve().as_posix()
    if isinstance(target, RemotePath):
        if protocol_of(target.fs) != protocol_of(base.fs):
            return str(target)
        return posixpath.relpath(target.path, base.path)
    return Path(os.path.relpath(target.resolve(), base.resolve())).as_posix()


def entry_path(base: Path | RemotePath, text: str) -> AnyPath:
    """A file named in a listing (CSV cell) below ``base``: relative to it, or absolute / a URL as written."""
    return as_path(text) if is_url(text) else base / text
