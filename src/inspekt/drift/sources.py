"""What a drift REFERENCE or CURRENT can be, turned into a ``Profile``.

A folder of images (searched recursively), a dataset layout or CSV (its images, never its masks),
a saved profile (``.json``), or — as reference — a model bundle, whose ``reference.json`` holds the
training images' profile and the model's predictions on them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

from inspekt import jsonio, storage
from inspekt.bundle import (
    CARD,
    REFERENCE,
    SUFFIX,
    Bundle,
    is_zip,
    open_bundle,
)
from inspekt.errors import BundleError, DatasetError, InspektError
from inspekt.profiling.profile import DEFAULT_MIN_SIDE, Profile, profile_images, sample_files

Source = str | os.PathLike | Profile | Sequence[str | os.PathLike]


def is_bundle(path: Path | storage.RemotePath) -> bool:
    """Whether ``path`` is a model bundle (folder with a card, ``.inspekt`` zip, or run folder)."""
    if path.suffix.lower() == SUFFIX:  # decided by name: no need to fetch a remote zip's end to know
        return path.is_file() or (path / CARD).is_file()
    if path.is_dir():
        return (path / CARD).is_file() or (path / "bundle" / CARD).is_file()
    return path.is_file() and is_zip(path)


def source_files(source: str | os.PathLike) -> list[str]:
    """The image files of a folder, dataset layout or CSV.

    Raises:
        DatasetError: the path is missing or holds no images.
    """
    from inspekt.data import open_dataset
    from inspekt.io import list_images

    path = storage.as_path(source)
    try:
        return [str(s.path) for s in open_dataset(path).samples]
    except DatasetError:
        if not path.is_dir():
            raise
    files = [str(f) for f in list_images(path)]
    if not files:
        raise DatasetError(f"{path}: no image files found (looked for .png, .jpg, .tif, ... in all sub-folders)")
    return files


def bundle_reference(path: str | os.PathLike | Bundle) -> Profile:
    """The reference profile stored in a bundle (a path, or one already opened).

    Raises:
        BundleError: the bundle has no ``reference.json`` (made before drift profiles existed).
    """
    bundle = path if isinstance(path, Bundle) else open_bundle(path)
    where = bundle.path
    if not bundle.has(REFERENCE):
        raise BundleError(
            f"{where}: this bundle has no {REFERENCE} (it was made before bundles carried a drift "
            "profile); give the training images' folder as REFERENCE instead, or retrain"
        )
    try:
        data = jsonio.loads(bundle.read(REFERENCE))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{where}: {REFERENCE} is damaged ({exc})") from None
    return Profile.from_dict(data, f"{where}:{REFERENCE}")


def load_profile(
    source: Source,
    *,
    workers: int = 1,
    sample: int | None = None,
    seed: int = 0,
    min_side: int = DEFAULT_MIN_SIDE,
    progress: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    client=None,
) -> Profile:
    """Turn a source into a profile (images are profiled; profiles and bundles are read).

    Args:
        source: a Profile, a list of image paths, a folder / dataset / CSV, a ``.json`` profile,
            or a model bundle.
        workers: processes for profiling.
        sample: profile a seeded random sample of this many images.
        seed: the sample's seed.
        min_side: working resolution rule (``inspekt.io.reduced``).
        progress: called with the number of images finished, as profiling goes.
        on_start: called once with the number of images about to be profiled.
        client: a ``distributed.Client`` to profile on (see ``inspekt.cluster``).
    """
    if isinstance(source, Profile):
        return source
    if isinstance(source, (str, os.PathLike, storage.RemotePath)):
        path = storage.as_path(source)
        if path.suffix.lower() == ".json" and path.is_file():
            return Profile.load(path)
        if is_bundle(path):
            return bundle_reference(path)
        if not path.exists():
            reason = path.missing_reason() if isinstance(path, storage.RemotePath) else "no such file or folder"
            raise InspektError(
                f"{path}: {reason} (give a folder of images, a dataset, a CSV, a saved profile .json or a model bundle)"
            )
        files = source_files(path)
    else:
        files = list(source)  # profile_images checks that they are paths
    files = sample_files(files, sample, seed)
    if on_start:
        on_start(len(files))
    return profile_images(files, workers=workers, min_side=min_side, progress=progress, client=client)
