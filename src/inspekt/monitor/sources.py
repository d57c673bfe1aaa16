"""Where monitored images come from: a drop folder, a camera (or video file), or a snapshot URL.

Every source yields ``Item``\\ s — an id that is stable across restarts, and the encoded image bytes
(or the reason there are none) — so one code path predicts, profiles and records them all.
"""

from __future__ import annotations

import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from inspekt.errors import ConfigError, DatasetError, InspektError

SETTLE_SECONDS = 1.0  # a drop-folder file must be unchanged this long before it is read (it may still be written)
URL_TIMEOUT = 10.0
TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".swp")


class SourceError(InspektError):
    """A monitoring source cannot be used (unknown kind, unreadable camera, unreachable URL)."""


@dataclass
class Item:
    """One image to monitor: ``item`` is its id in the history, ``data`` its encoded bytes or None
    with ``reason`` saying why it could not be read."""

    item: str
    data: bytes | None = None
    reason: str | None = None
    size: int | None = None  # a drop-folder file's size and modification time just before it was read
    mtime_ns: int | None = None


class FolderSource:
    """New image files in a folder (and its sub-folders), oldest first; ids are paths relative to it."""

    kind = "folder"
    finite = True  # with --once: stop when nothing new is left

    def __init__(self, folder: Path, settle: float = SETTLE_SECONDS):
        self.folder, self.settle = folder, settle
        self.name = str(folder)
        self._seen_size: dict[str, tuple[int, int]] = {}  # item -> (size, mtime_ns) at the previous poll
        self.waiting = 0  # files found but not yet settled at the last poll
        # items recorded as skipped -> their file's (size, mtime_ns) then (None: unknown): read again when it changed
        self.skipped: dict[str, tuple[int, int] | None] = {}

    def poll(self, done: set[str]) -> Iterator[Item]:
        """Yield the settled files not in ``done`` (or skipped, and changed since), by (modification time, name)."""
        from inspekt.io import list_images

        try:
            paths = list_images(self.folder)
        except DatasetError as exc:  # e.g. a network share being remounted: the monitor warns and looks again
            raise SourceError(f"cannot list the drop folder ({exc})") from None
        ready, waiting = [], 0
        for path in paths:
            item = item_id(path.relative_to(self.folder).as_posix())
            if (item in done and item not in self.skipped) or path.name.lower().endswith(TEMP_SUFFIXES):
                continue
            try:
                stat = path.stat()
            except OSError:  # removed between listing and looking
                continue
            current = (stat.st_size, stat.st_mtime_ns)
            if item in done and self.skipped[item] in (None, current):  # skipped, and the file is as it was then
                continue
            previous = self._seen_size.get(item)
            self._seen_size[item] = current
            # settled: not touched for a moment, and the same size and time as the previous poll (or old enough
            # that no writer can still be busy with it)
            age = time.time() - stat.st_mtime
            if age >= self.settle and (previous == current or age >= 5 * self.settle):
                ready.append((stat.st_mtime_ns, item, path, current))
            else:
                waiting += 1
        self.waiting = waiting
        for _, item, path, (size, mtime_ns) in sorted(ready):
            self._seen_size.pop(item, None)
            yield self._read(item, path, size, mtime_ns)

    @staticmethod
    def _read(item: str, path: Path, size: int, mtime_ns: int) -> Item:
        try:
            return Item(item, path.read_bytes(), size=size, mtime_ns=mtime_ns)
        except OSError as exc:
            return Item(item, None, f"cannot read the file ({exc.strerror or exc})", size, mtime_ns)

    def close(self) -> None:
        """Nothing to release."""


class CameraSource:
    """Frames of an OpenCV capture: ``camera:0`` (a device) or ``camera:PATH`` (a video file, which
    resumes at the frame after the last recorded one). Ids are ``frame N``, numbered across restarts."""

    kind = "camera"

    def __init__(self, spec: str, start: int):
        import cv2

        target = spec.removeprefix("camera:")
        self.name, self.next = spec, start
        self.is_file = not target.isdigit()
        if self.is_file and not Path(target).is_file():
            raise SourceError(
                f"--source {spec}: no camera index or video file {target!r}; give camera:0 for the "
                "first camera or camera:PATH for a video file"
            )
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our message below says it in one line
        try:
            self.capture = cv2.VideoCapture(target if self.is_file else int(target))
        finally:
            cv2.utils.logging.setLogLevel(level)
        self._first = self._check_video(spec, start) if self.is_file else None
        if not self.capture.isOpened():
            raise SourceError(
                f"--source {spec}: cannot open this camera; check that it is connected, that no other "
                "program holds it, and that this user may use it (e.g. the 'video' group)"
            )
        self.finite = self.is_file
        self.ended = False

    def _check_video(self, spec: str, start: int) -> np.ndarray | None:
        """Make sure ``camera:PATH`` is a video with a readable first frame, then go to frame ``start``.

        Returns:
            The first frame when ``start`` is 0 (the first poll yields it), else None.

        Raises:
            SourceError: OpenCV cannot open the file, it is text (FFmpeg would render it as ANSI art),
                or it has no frame that can be read.
        """
        import cv2

        fourcc = int(self.capture.get(cv2.CAP_PROP_FOURCC)) if self.capture.isOpened() else 0
        codec = bytes((fourcc >> 8 * i) & 255 for i in range(4))
        ok, frame = self.capture.read() if self.capture.isOpened() and codec != b"ansi" else (False, None)
        if not ok or frame is None:
            self.capture.release()
            why = "OpenCV cannot open it" if not fourcc else "it is text" if codec == b"ansi" else "no frame decodes"
            raise SourceError(
                f"--source {spec}: not a video file that can be opened ({why}); give camera:PATH of a "
                "video (e.g. .mp4, .avi, .mkv), or camera:0 for the first camera"
            )
        if start:
            self.capture.set(cv2.CAP_PROP_POS_FRAMES, start)
            return None
        return frame

    def poll(self, done: set[str]) -> Iterator[Item]:
        """Yield one frame (as PNG); nothing at the end of a video file.

        Raises:
            SourceError: a camera gave no frame (unplugged, or held by another program); the monitor
                logs it and tries again at the next tick.
        """
        frame, self._first = self._first, None  # the frame read when the video was checked
        ok = frame is not None
        if not ok:
            ok, frame = self.capture.read()
        if not ok or frame is None:
            self.ended = self.is_file
            if not self.is_file:
                raise SourceError(f"{self.name}: the camera gave no frame; check that it is still connected")
            return
        item = f"frame {self.next}"
        self.next += 1
        yield Item(item, encode_png(frame))

    def close(self) -> None:
        """Release the capture."""
        self.capture.release()


class UrlSource:
    """A URL that returns a snapshot image; ids are ``snapshot N``, numbered across restarts."""

    kind = "url"
    finite = False

    def __init__(self, url: str, start: int):
        self.name, self.url, self.next = url, url, start
        self.fetch()  # an unreachable URL fails at start, not as a warning at every tick

    def fetch(self) -> bytes:
        """The URL's body.

        Raises:
            SourceError: the URL cannot be reached or answers with an error status.
        """
        try:
            with urllib.request.urlopen(self.url, timeout=URL_TIMEOUT) as response:
                return response.read()
        except urllib.error.HTTPError as exc:
            raise SourceError(
                f"--source {self.url}: the server answered {exc.code} {exc.reason}; check the snapshot URL"
            ) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SourceError(
                f"--source {self.url}: cannot reach it ({reason}); check the address, that the camera "
                "or server is up, and any proxy settings"
            ) from None

    def poll(self, done: set[str]) -> Iterator[Item]:
        """Yield one snapshot; a failed fetch is logged by the caller and tried again at the next tick."""
        data = self.fetch()
        item = f"snapshot {self.next}"
        self.next += 1
        yield Item(item, data)

    def close(self) -> None:
        """Nothing to release."""


def item_id(relative: str) -> str:
    """A file's id in the history: its relative path, with bytes that are not UTF-8 spelled ``\\xNN``.

    Linux file names need not be UTF-8 (e.g. from an SMB share or an old camera); Python keeps such bytes
    as lone surrogates, which no database driver will store. The spelling is the same at every look.
    """
    return relative.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def encode_png(frame: np.ndarray) -> bytes:
    """PNG bytes of a uint8 OpenCV frame (BGR or grey, as ``VideoCapture.read`` gives it)."""
    import cv2

    ok, buffer = cv2.imencode(".png", frame)
    if not ok:
        raise SourceError("a camera frame could not be encoded as PNG")
    return buffer.tobytes()


def source_name(spec: str) -> str:
    """The history's name of a source: a folder's absolute path, else the spec as typed."""
    if spec.startswith(("camera:", "http://", "https://")):
        return spec
    return str(Path(spec).expanduser().resolve())


def open_source(spec: str, start: int = 0):
    """Open a monitoring source.

    Args:
        spec: a folder path, ``camera:0`` / ``camera:PATH``, or an ``http(s)://`` snapshot URL.
        start: the number of the next frame / snapshot (items already recorded for this source).

    Returns:
        A FolderSource, CameraSource or UrlSource.

    Raises:
        SourceError: unknown kind, missing folder, unreadable camera, unreachable URL.
    """
    if spec.startswith("camera:"):
        return CameraSource(spec, start)
    if spec.startswith(("http://", "https://")):
        return UrlSource(spec, start)
    if "://" in spec or (":" in spec.split(os.sep)[0] and not Path(spec).exists()):
        raise SourceError(
            f"--source {spec}: unknown kind of source; give a local drop folder, camera:0 (or "
            "camera:VIDEO) or an http(s):// snapshot URL (to watch a bucket, sync it to a local folder, "
            "e.g. with `aws s3 sync` on a timer)"
        )
    folder = Path(spec).expanduser()
    if folder.exists() and not folder.is_dir():
        raise SourceError(
            f"--source {spec}: is a file, not a folder; give the drop folder the images arrive in (or "
            f"camera:{spec} for a video file)"
        )
    if not folder.is_dir():
        raise SourceError(
            f"--source {spec}: no such folder; create the drop folder first, or give camera:0 or an "
            "http(s):// snapshot URL"
        )
    return FolderSource(folder.resolve())


def parse_duration(text: str, option: str = "--every") -> float:
    """Seconds from ``10s``, ``500ms``, ``2m``, ``1h`` or a plain number of seconds.

    Raises:
        ConfigError: not a positive duration.
    """
    units = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    value = str(text).strip().lower()
    unit = next((u for u in ("ms", "s", "m", "h") if value.endswith(u)), "")
    try:
        seconds = float(value[: len(value) - len(unit)]) * units.get(unit, 1.0)
    except ValueError:
        seconds = -1.0
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise ConfigError(
            f"{option} {text!r}: not a duration; give a positive number with a unit, e.g. 500ms, 10s, 2m or 1h"
        )
    return seconds
