"""Model bundles: a folder or a single ``.inspekt`` zip holding everything needed to predict.

    card.json            the ModelCard (task, classes, preprocessing, thresholds, ...)
    weights.safetensors  torch weights (fine-tuning, Grad-CAM); never a pickle
    model.onnx           the inference graph, parity-checked against torch when written
    reference.json       the training images' drift profile (when present)

Writing a bundle exports ONNX and refuses to write anything when ONNX and torch disagree.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import threading
import zipfile
import zlib
from pathlib import Path
from typing import IO

from inspekt import storage
from inspekt.card import SCHEMA, ModelCard, parse_card
from inspekt.errors import BundleError, ConfigError
from inspekt.io.outputs import check_folder_writable, shareable, writing
from inspekt.io.zips import MiB, ZipLimitError, ZipLimits, check_members

SUFFIX = ".inspekt"
CARD, WEIGHTS, ONNX, REFERENCE = "card.json", "weights.safetensors", "model.onnx", "reference.json"
SEEN = "seen"  # reference.json's image_key of the images that trained ("train") and validated ("val") it
DIGESTED = (WEIGHTS, ONNX)  # the members whose sha256 the card records and reading checks
MEMBERS = (CARD, WEIGHTS, ONNX, REFERENCE)
MAX_CARD_BYTES = MiB
PICKLE_SUFFIXES = {".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".bin", ".joblib"}


class Bundle:
    """A read-only view of a bundle folder or ``.inspekt`` zip, with its validated card.

    ``path`` is a ``Path`` or, for URLs, a ``storage.RemotePath``: a remote folder's files are
    fetched one at a time when read, a remote zip is fetched once into a temporary file. A zip's
    members are read when asked for, not kept: a loaded model holds no second copy of its graph.
    """

    def __init__(self, path: Path | storage.RemotePath, archive: _Archive | None = None):
        self.path = path
        self._archive = archive  # None for a folder
        self.card: ModelCard = parse_card(self.read(CARD), where=str(path))
        _check_consistent(self.card, str(path))

    def has(self, name: str) -> bool:
        """Whether the bundle holds the file ``name``."""
        return name in self._archive.names if self._archive is not None else (self.path / name).is_file()

    def read(self, name: str) -> bytes:
        """The bytes of file ``name``; raises ``BundleError`` naming what is missing."""
        if not self.has(name):
            raise BundleError(
                f"{self.path}: bundle has no {name}; it is incomplete: copy the whole bundle again or retrain"
            )
        if self._archive is not None:
            data = self._archive.read(name)
        else:
            _check_card_size(name, (self.path / name).stat().st_size, str(self.path))
            data = (self.path / name).read_bytes()
        expected = self.card.digests.get(name) if name != CARD else None
        if expected and digest(data) != expected:
            raise BundleError(
                f"{self.path}: {name} is not the file this card was written with (its sha256 differs): it was "
                "replaced or damaged; copy the whole bundle again, export it again, or retrain"
            )
        return data

    def __repr__(self) -> str:
        card = self.card
        return (
            f"Bundle({str(self.path)!r}, task={card.task}, architecture={card.architecture}, "
            f"classes={len(card.classes)})"
        )


class _Archive:
    """A ``.inspekt`` zip's known members, checked against ``bundle_limits()`` when opened and read one
    at a time when asked for (unknown members are never read)."""

    def __init__(self, path: Path | storage.RemotePath):
        self.where, self._lock = str(path), threading.Lock()  # a remote zip's one file handle seeks per read
        try:
            self._source = _zip_source(path)
            with zipfile.ZipFile(self._source) as archive:
                infos = {i.filename: i for i in archive.infolist() if i.filename in MEMBERS and not i.is_dir()}
                check_members(list(infos.values()), bundle_limits(), self.where)
        except (zipfile.BadZipFile, OSError) as exc:
            raise BundleError(f"{path}: not a {SUFFIX} bundle (not a readable zip file: {exc})") from exc
        except ZipLimitError as exc:
            raise BundleError(f"{exc}; inspekt refused the bundle (INSPEKT_MAX_BUNDLE_MB sets the limit)") from None
        if CARD not in infos:
            raise BundleError(f"{path}: not a model bundle (no {CARD} inside the archive)")
        _check_card_size(CARD, infos[CARD].file_size, self.where)
        self.names = set(infos)

    def read(self, name: str) -> bytes:
        try:
            with self._lock, zipfile.ZipFile(self._source) as archive:
                return archive.read(name)
        except (zipfile.BadZipFile, OSError, zlib.error, EOFError) as exc:  # changed or damaged (a deflated member)
            raise BundleError(f"{self.where}: {name} cannot be read from the archive ({exc})") from exc


def bundle_limits() -> ZipLimits:
    """How large a ``.inspekt`` zip may inflate: ``INSPEKT_MAX_BUNDLE_MB`` (default 4096) in all and
    for one member, and no member packed more than 50-fold (network weights pack at about 1.1)."""
    raw = os.environ.get("INSPEKT_MAX_BUNDLE_MB", "4096")
    try:
        limit = int(float(raw) * MiB)
    except ValueError:
        raise ConfigError(f"INSPEKT_MAX_BUNDLE_MB={raw!r} is not a number of megabytes") from None
    return ZipLimits(total_bytes=limit, member_bytes=limit, what="bundle")


def _check_card_size(name: str, size: int, where: str) -> None:
    if name == CARD and size > MAX_CARD_BYTES:
        raise BundleError(
            f"{where}: card.json is {size / MiB:,.1f} MB; a model card is a few KB of JSON: this is not "
            "a card written by inspekt"
        )


def _check_consistent(card: ModelCard, where: str) -> None:
    """The registry's conventions: ``num_classes`` and ``in_chans`` must agree with the card."""
    expected = {"num_classes": len(card.classes), "in_chans": card.input.channels}
    for key, value in expected.items():
        if key in card.params and card.params[key] != value:
            raise BundleError(
                f"{where}: card.json params.{key} is {card.params[key]} but the card declares {value} "
                f"({'classes' if key == 'num_classes' else 'input.channels'}); the card was edited or is damaged"
            )


def open_bundle(path: str | Path | storage.RemotePath) -> Bundle:
    """Open a bundle folder or ``.inspekt`` file and validate its card.

    Args:
        path: a bundle folder, a ``.inspekt`` file, or a folder containing ``bundle/``; local or an
            fsspec URL (``s3://bucket/model.inspekt``).

    Returns:
        The opened bundle.

    Raises:
        BundleError: missing path, a pickle checkpoint, not a bundle, or an invalid card.
    """
    path = storage.as_path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        raise BundleError(
            f"{path}: {path.suffix} files are pickles, which can run arbitrary code when loaded; inspekt "
            "never loads them. Give a bundle folder or .inspekt file (made by `inspekt train` / `inspekt export`)"
        )
    if not path.exists():
        reason = path.missing_reason() if isinstance(path, storage.RemotePath) else "no such bundle"
        raise BundleError(f"{path}: {reason} (give a bundle folder or a {SUFFIX} file)")
    if path.is_dir():
        if not (path / CARD).is_file() and (path / "bundle" / CARD).is_file():
            path = path / "bundle"  # a run folder: use the bundle it holds
        if not (path / CARD).is_file():
            raise BundleError(f"{path}: not a model bundle (no {CARD} inside)")
        return Bundle(path)
    return Bundle(path, _Archive(path))


def _zip_source(path: Path | storage.RemotePath) -> Path | IO[bytes]:
    # A remote zip is fetched once into a temporary file (on disk, not held in memory); zipfile then
    # seeks in it, not over the network.
    if not isinstance(path, storage.RemotePath):
        return path
    spool = tempfile.TemporaryFile()
    with path.open("rb") as remote:
        shutil.copyfileobj(remote, spool, 4 * MiB)
    spool.seek(0)
    return spool


def is_zip(path: Path | storage.RemotePath) -> bool:
    """Whether ``path`` is a readable zip file (local or remote; remote reads only its end)."""
    if not isinstance(path, storage.RemotePath):
        return zipfile.is_zipfile(path)
    try:
        with path.open("rb") as handle:
            return zipfile.is_zipfile(handle)
    except (OSError, ValueError):
        return False


def check_target(out: Path | storage.RemotePath, archive: bool, overwrite: bool) -> Path | storage.RemotePath:
    """Where to write; refuses to replace anything but a bundle, and a bundle only when asked."""
    out = storage.as_path(out)
    if archive and out.suffix != SUFFIX and out.is_dir() and not (out / CARD).is_file():
        raise BundleError(  # it became <folder>.inspekt beside the folder
            f"{out} is a folder; name the bundle file to write, e.g. {out / ('model' + SUFFIX)} "
            "(or write the bundle as a folder: --folder, archive=False)"
        )
    out = out if not archive or out.suffix == SUFFIX else out.with_name(out.name + SUFFIX)
    if isinstance(out, Path):  # before the export: a folder that cannot be written fails now
        check_folder_writable(out.parent, str(out))
    if not out.exists():
        return out
    is_bundle = (out / CARD).is_file() if out.is_dir() else is_zip(out)
    if not is_bundle:
        raise BundleError(f"{out} exists and is not a model bundle; choose another path (nothing was written)")
    if not overwrite:
        raise BundleError(f"{out} already exists; choose another path or pass --overwrite to replace it")
    return out


def digest(data: bytes) -> str:
    """The digest a card records for a member: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def graph_digest(bundle: Bundle) -> str:
    """Which model.onnx a bundle holds: the digest its card records, or (older cards) the file's own."""
    return bundle.card.digests.get(ONNX) or digest(bundle.read(ONNX))


def model_version(bundle: Bundle) -> str:
    """``name@hash``, what results carry to say which model made them: the bundle's name (a run's folder
    for its ``bundle/``) and the first 12 hex digits of its graph's sha256 (``graph_digest``)."""
    path = Path(str(bundle.path))
    name = path.parent.name if path.name == "bundle" else path.stem
    return f"{name}@{graph_digest(bundle).removeprefix('sha256:')[:12]}"


def _with_digests(members: dict[str, bytes]) -> dict[str, bytes]:
    """The members with a card that records the digests of the graph and the weights written beside it."""
    card = parse_card(members[CARD], where=CARD)
    digests = {name: digest(members[name]) for name in DIGESTED if name in members}
    card = card.model_copy(update={"digests": digests, "schema_": SCHEMA})
    return members | {CARD: card.to_json().encode()}


def write_members(
    out: Path | storage.RemotePath, members: dict[str, bytes], archive: bool
) -> Path | storage.RemotePath:
    """Write a bundle's members (its card stamped with the members' digests), atomically where the
    storage allows."""
    if CARD in members:
        members = _with_digests(members)
    if isinstance(out, storage.RemotePath):
        return _write_remote(out, members, archive)
    return _write_local(out, members, archive)


def _write_local(out: Path, members: dict[str, bytes], archive: bool) -> Path:
    # Write next to the target and rename, so a crash or a full disk never leaves a half-written bundle.
    out.parent.mkdir(parents=True, exist_ok=True)
    if archive:
        tmp = out.with_name(out.name + ".tmp")
    else:  # mkdtemp makes an owner-only folder: shareable gives it mkdir's permissions (other accounts read it)
        tmp = shareable(tempfile.mkdtemp(prefix=".bundle-", dir=out.parent))
    try:
        with writing(out):
            if archive:
                with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
                    for name, data in members.items():
                        zf.writestr(name, data)
            else:
                for name, data in members.items():
                    (tmp / name).write_bytes(data)
    except BaseException:
        if archive:
            tmp.unlink(missing_ok=True)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        raise
    if not archive and out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out


def _write_remote(out: storage.RemotePath, members: dict[str, bytes], archive: bool) -> storage.RemotePath:
    # Object stores have no rename: a zip is one PUT (never half-written); a folder's files are
    # PUT one by one with the card last, and stale members of an older bundle are removed.
    storage.check_writable(out, "write the bundle")
    if archive:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        out.write_bytes(buffer.getvalue())
        return out
    for name in sorted(members, key=lambda n: n == CARD):
        (out / name).write_bytes(members[name])
    for name in (WEIGHTS, ONNX, REFERENCE):
        if name not in members:
            (out / name).unlink(missing_ok=True)
    return out


def copy_bundle(
    bundle: Bundle,
    out: str | Path,
    *,
    archive: bool = True,
    overwrite: bool = False,
    card: ModelCard | None = None,
    replace: dict[str, bytes] | None = None,
) -> Path:
    """Copy a checked bundle's files byte for byte (no re-export), optionally with a new card or
    replaced members (e.g. a chosen threshold, an INT8 graph). ``out`` may be the bundle itself.

    Raises:
        BundleError: ``out`` exists and is not a bundle, or is one and ``overwrite`` is False.
    """
    names = [n for n in MEMBERS if bundle.has(n)]
    members = {n: bundle.read(n) for n in names} | (replace or {})
    if card is not None:
        members[CARD] = card.to_json().encode()
    return write_members(check_target(storage.as_path(out), archive, overwrite), members, archive)
