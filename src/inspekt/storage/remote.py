"""``RemotePath``: a file or folder on an fsspec filesystem that behaves like the ``pathlib.Path``
inspekt uses, and the translation of storage failures into one-line ``StorageError`` messages."""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from functools import total_ordering
from pathlib import PurePosixPath
from typing import IO, Any

from inspekt.errors import InspektError, one_line

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+)://")
# Object stores have no folders: "mkdir" is a no-op there (s3fs would even create a bucket).
OBJECT_STORES = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "oss", "r2"})
_INSTALL_HINT = {
    "s3": "pip install 'inspekt[dist]' (or pip install s3fs)",
    "gs": "pip install gcsfs",
    "gcs": "pip install gcsfs",
    "az": "pip install adlfs",
    "abfs": "pip install adlfs",
}


class StorageError(InspektError):
    """A storage URL could not be used: missing driver, credentials, endpoint or permission."""


def _filesystem(url: str) -> tuple[Any, str]:
    protocol = _URL.match(url).group(1).lower()
    try:
        from fsspec.core import url_to_fs
    except ImportError:  # fsspec is a core dependency; only a broken install lands here
        raise StorageError(f"{url}: fsspec is not installed; pip install fsspec") from None
    try:
        fs, path = url_to_fs(url, **_options(protocol))
    except ImportError:
        fix = _INSTALL_HINT.get(protocol, f"install the fsspec driver for {protocol}://")
        raise StorageError(f"{url}: reading {protocol}:// URLs needs an extra package; {fix}") from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise StorageError(
                f"{url}: unknown storage protocol {protocol!r} (use a local path, s3://, "
                "memory://, file:// or another protocol fsspec supports)"
            ) from None
        raise StorageError(f"{url}: {one_line(exc)}") from None
    if _options(protocol):
        fs.retries = min(fs.retries, S3_RETRIES)
    return fs, path


# botocore waits 60 s per read and retries 5 times by default: an endpoint that accepts connections but never
# answers held a command silent for many minutes. These bound it to about a minute, then the error names it.
S3_CLIENT = {"connect_timeout": 5, "read_timeout": 10, "retries": {"max_attempts": 2, "mode": "standard"}}
S3_RETRIES = 2  # s3fs's own retries of a timed-out call (default 5), each with botocore's above


def _options(protocol: str) -> dict[str, Any]:
    """Storage options inspekt adds: time limits for S3 unless the user sets their own (fsspec config
    ``config_kwargs`` for s3 or s3a, or botocore's AWS_MAX_ATTEMPTS / AWS_RETRY_MODE)."""
    if protocol not in ("s3", "s3a"):
        return {}
    from fsspec.config import conf

    own = any("config_kwargs" in conf.get(name, {}) for name in ("s3", "s3a"))
    own = own or any(os.environ.get(name) for name in ("AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE"))
    return {} if own else {"config_kwargs": S3_CLIENT}


# URL -> content hash of the bytes last read from it, newest last; read_ahead reads from several threads
_CONTENT_KEYS: OrderedDict[str, str] = OrderedDict()
_CONTENT_LOCK = threading.Lock()
MAX_CONTENT_KEYS = 100_000  # about 20 MB; for a set of more remote images, which were seen is not said


def _remember_key(url: str, data: bytes) -> None:
    key = hashlib.blake2b(data, digest_size=8).hexdigest()  # as data.dataset.image_key hashes a local file
    with _CONTENT_LOCK:
        _CONTENT_KEYS[url] = key
        _CONTENT_KEYS.move_to_end(url)
        while len(_CONTENT_KEYS) > MAX_CONTENT_KEYS:
            _CONTENT_KEYS.popitem(last=False)


def _endpoint() -> str:
    return os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("FSSPEC_S3_ENDPOINT_URL") or "the default"


def _translate(exc: BaseException, url: str) -> BaseException:
    """The exception to raise instead of ``exc``: a ``StorageError`` with the fix when the user can act."""
    name = type(exc).__name__
    if "Credentials" in name:  # botocore NoCredentialsError / PartialCredentialsError
        return StorageError(
            f"{url}: no credentials found ({name}); set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with ~/.aws/credentials"
        )
    if isinstance(exc, PermissionError):
        return StorageError(
            f"{url}: access denied ({one_line(exc)}); check that these credentials may "
            "read/write it (bucket policy, IAM role) or use other credentials"
        )
    if "EndpointConnection" in name or "ClientConnector" in name or isinstance(exc, ConnectionError):
        return StorageError(
            f"{url}: cannot reach the storage endpoint ({_endpoint()}): {one_line(exc)}; "
            "check AWS_ENDPOINT_URL / FSSPEC_S3_ENDPOINT_URL and the network"
        )
    if "Timeout" in name:  # botocore ConnectTimeoutError / ReadTimeoutError, after the retries
        return StorageError(
            f"{url}: the storage endpoint ({_endpoint()}) did not answer in time ({one_line(exc)}); check "
            "AWS_ENDPOINT_URL / FSSPEC_S3_ENDPOINT_URL, a proxy, and the network"
        )
    if name in ("ClientError", "ParamValidationError", "NoRegionError"):
        return StorageError(f"{url}: storage request refused: {one_line(exc)}")
    return exc


@contextlib.contextmanager
def _errors(url: str) -> Iterator[None]:
    try:
        yield
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError, FileExistsError):
        raise  # callers turn these into their own messages (skip a file, "no such dataset", ...)
    except Exception as exc:
        translated = _translate(exc, url)
        if translated is exc:
            raise
        raise translated from None


class _Stat:
    """The one ``os.stat_result`` field inspekt reads."""

    def __init__(self, size: int):
        self.st_size = size


@total_ordering
class RemotePath:
    """A file or folder on an fsspec filesystem, with the subset of ``pathlib.Path`` inspekt uses.

    Joining and names are pure (POSIX rules); ``exists``, ``read_bytes``, ``iterdir``... call the
    filesystem. Not ``os.PathLike`` on purpose: ``open()`` and ``Path()`` must never see a URL.
    """

    __slots__ = ("_url", "fs", "path")

    def __init__(self, fs: Any, path: str):
        self.fs = fs
        self.path = path.rstrip("/") or path
        self._url = fs.unstrip_protocol(self.path)  # kept: sorting and hashing thousands of paths use it

    @classmethod
    def from_url(cls, url: str) -> RemotePath:
        """Open ``url``'s filesystem (fsspec caches it) and point at ``url``."""
        fs, path = _filesystem(url)
        return cls(fs, path)

    # --- pure path algebra -------------------------------------------------------------------
    def __str__(self) -> str:
        return self._url

    def __repr__(self) -> str:
        return f"RemotePath({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RemotePath) and str(self) == str(other)

    def __lt__(self, other: RemotePath) -> bool:
        return str(self) < str(other)

    def __hash__(self) -> int:
        return hash(str(self))

    def __reduce__(self):
        return (RemotePath.from_url, (str(self),))  # workers rebuild the filesystem from their own config

    def __truediv__(self, other: str | os.PathLike[str]) -> RemotePath:
        joined = posixpath.normpath(posixpath.join(self.path, os.fspath(other)))
        return RemotePath(self.fs, joined)

    def joinpath(self, *others: str) -> RemotePath:
        """``self / a / b ...``."""
        result = self
        for other in others:
            result = result / other
        return result

    @property
    def name(self) -> str:
        """The last component."""
        return posixpath.basename(self.path)

    @property
    def suffix(self) -> str:
        """The file extension of the last component, e.g. ``.png``."""
        return PurePosixPath(self.name).suffix

    @property
    def stem(self) -> str:
        """The last component without its suffix."""
        return PurePosixPath(self.name).stem

    @property
    def parent(self) -> RemotePath:
        """The containing folder (a bucket is its own parent)."""
        parent = posixpath.dirname(self.path)
        return RemotePath(self.fs, parent) if parent else self

    @property
    def parts(self) -> tuple[str, ...]:
        """The components of the path below the protocol."""
        return PurePosixPath(self.path).parts

    def relative_to(self, other: RemotePath) -> PurePosixPath:
        """This path relative to ``other`` (a pure POSIX path)."""
        return PurePosixPath(self.path).relative_to(other.path)

    def with_name(self, name: str) -> RemotePath:
        """The same folder, another file name."""
        return RemotePath(self.fs, posixpath.join(posixpath.dirname(self.path), name))

    def with_suffix(self, suffix: str) -> RemotePath:
        """The same path with another suffix."""
        return self.with_name(str(PurePosixPath(self.name).with_suffix(suffix)))

    # --- filesystem calls ----------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether a file or folder (prefix) is there."""
        with _errors(str(self)):
            return bool(self.fs.exists(self.path))

    def is_dir(self) -> bool:
        """Whether this is a folder (on object stores: a prefix with objects below it)."""
        with _errors(str(self)):
            return bool(self.fs.isdir(self.path))

    def is_file(self) -> bool:
        """Whether this is a file (object)."""
        with _errors(str(self)):
            return bool(self.fs.isfile(self.path))

    def iterdir(self) -> Iterator[RemotePath]:
        """The entries directly inside this folder."""
        with _errors(str(self)):
            names = self.fs.ls(self.path, detail=False)
        return iter([RemotePath(self.fs, n) for n in names if n.rstrip("/") != self.path])

    def stat(self) -> _Stat:
        """An object with ``st_size`` (bytes)."""
        with _errors(str(self)):
            return _Stat(int(self.fs.size(self.path) or 0))

    def read_bytes(self) -> bytes:
        """The whole file's bytes (their ``content_key`` is kept for this process)."""
        with _errors(str(self)):
            data = self.fs.cat_file(self.path)
        _remember_key(str(self), data)
        return data

    def content_key(self) -> str | None:
        """The hash of the bytes last read from this URL in this process (as ``data.dataset.image_key``
        hashes a local file), or None when it was not read: "did the model see it" without a second download."""
        with _CONTENT_LOCK:
            return _CONTENT_KEYS.get(str(self))

    def read_text(self, encoding: str = "utf-8") -> str:
        """The whole file decoded as text."""
        return self.read_bytes().decode(encoding)

    def write_bytes(self, data: bytes) -> int:
        """Write (replace) the file in one request."""
        with _errors(str(self)):
            self.fs.pipe_file(self.path, bytes(data))
        return len(data)

    def write_text(self, text: str, encoding: str = "utf-8") -> int:
        """Write (replace) the file as text."""
        return self.write_bytes(text.encode(encoding))

    def open(self, mode: str = "r", **kwargs: Any) -> IO:
        """A file object; text modes accept ``encoding`` / ``newline`` / ``errors`` like ``open``."""
        with _errors(str(self)):
            return self.fs.open(self.path, mode, **kwargs)

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Create the folder; a no-op on object stores, where folders exist by holding objects."""
        if protocol_of(self.fs) in OBJECT_STORES:
            return
        with _errors(str(self)):
            self.fs.makedirs(self.path, exist_ok=True)

    def unlink(self, missing_ok: bool = False) -> None:
        """Delete the file."""
        with _errors(str(self)), contextlib.suppress(*((FileNotFoundError,) if missing_ok else ())):
            self.fs.rm_file(self.path)

    def rmtree(self) -> None:
        """Delete the folder and everything below it."""
        with _errors(str(self)):
            self.fs.rm(self.path, recursive=True)

    def find(self) -> list[RemotePath]:
        """Every file below this folder, at any depth, in one listing where the store allows."""
        with _errors(str(self)):
            names = self.fs.find(self.path, withdirs=False, detail=False)
        return [RemotePath(self.fs, n) for n in names]

    def missing_reason(self) -> str:
        """Why this path is absent, for an error message: a missing bucket, or a missing key/prefix."""
        bucket = self.parts[0] if protocol_of(self.fs) in OBJECT_STORES and self.parts else None
        if bucket and bucket != self.path:
            with _errors(str(self)), contextlib.suppress(FileNotFoundError):
                if not self.fs.exists(bucket):
                    return f"no such bucket {bucket!r} (check the name, the endpoint AWS_ENDPOINT_URL, or create it)"
        return "no such file, key or prefix"


def protocol_of(fs: Any) -> str:
    protocol = fs.protocol
    return (protocol if isinstance(protocol, str) else protocol[0]).lower()
