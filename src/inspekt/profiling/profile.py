"""Drift profiles: per-image properties and pixel histograms of a set of images.

A ``Profile`` is serialisable (JSON, schema ``inspekt.profile/1``) and mergeable: the profile of
two lists of files is ``Profile.concat([profile(a), profile(b)])``, exactly, which is how
``profile_images`` spreads the work over processes (and how a cluster would).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from inspekt import jsonio, storage
from inspekt.cluster import chunks_for, for_workers, map_ordered, slots
from inspekt.errors import ConfigError, ImageLoadError, InspektError
from inspekt.io import list_images, output_file
from inspekt.profiling.properties import CHANNELS, COARSE_BINS, HIST_BINS, PROPERTY_NAMES, Stack, coarse, compute
from inspekt.results import SkippedFile

SCHEMA = "inspekt.profile/1"
DEFAULT_MIN_SIDE = 64
AUTO_WORKERS = 4  # processes at most for workers=0
AUTO_FROM = 1000  # images from which workers=0 starts processes (below, starting them costs more)


@dataclass
class Profile:
    """Properties and histograms of a set of images.

    Attributes:
        files: the images profiled, in order.
        values: ``{property: (N,) float64}``, NaN where a property does not apply.
        pixel_histogram: (4, 256) pixel counts summed over the images (grey, red, green, blue;
            colour rows from colour images only).
        image_histograms: (N, 4, 32) per-image coarse counts, for permutation tests.
        min_side: the working resolution rule (see ``inspekt.io.reduced``); 0 = full resolution.
        skipped: files that could not be read, and why.
        model: for a bundle's reference: ``{"labels": [...], "scores": [...]}`` of its predictions.
    """

    files: list[str]
    values: dict[str, np.ndarray]
    pixel_histogram: np.ndarray
    image_histograms: np.ndarray
    min_side: int = DEFAULT_MIN_SIDE
    skipped: list[SkippedFile] = field(default_factory=list)
    model: dict[str, list] | None = None

    def __len__(self) -> int:
        return len(self.files)

    @classmethod
    def empty(cls, min_side: int = DEFAULT_MIN_SIDE) -> Profile:
        """A profile of no images (the identity of ``concat``)."""
        return cls(
            [],
            {name: np.zeros(0) for name in PROPERTY_NAMES},
            np.zeros((len(CHANNELS), HIST_BINS)),
            np.zeros((0, len(CHANNELS), COARSE_BINS)),
            min_side,
        )

    @classmethod
    def concat(cls, parts: Sequence[Profile]) -> Profile:
        """The profile of the union of the parts' images (in order).

        Raises:
            InspektError: the parts were made with different working resolutions.
        """
        if not parts:
            return cls.empty()
        sides = {p.min_side for p in parts}
        if len(sides) > 1:
            raise InspektError(
                f"cannot merge profiles made with different min_side values {sorted(sides)}; "
                "profile all images with the same min_side"
            )
        models = [p.model for p in parts if p.model]
        model = None
        if models:
            model = {key: [v for m in models for v in m[key]] for key in models[0]}
        return cls(
            files=[f for p in parts for f in p.files],
            values={name: np.concatenate([p.values[name] for p in parts]) for name in PROPERTY_NAMES},
            pixel_histogram=np.sum([p.pixel_histogram for p in parts], axis=0),
            image_histograms=np.concatenate([p.image_histograms for p in parts]),
            min_side=sides.pop(),
            skipped=[s for p in parts for s in p.skipped],
            model=model,
        )

    def merge(self, other: Profile) -> Profile:
        """The profile of this profile's images followed by ``other``'s."""
        return Profile.concat([self, other])

    def is_colour(self) -> np.ndarray:
        """(N,) bool: which images are colour."""
        return ~np.isnan(self.values["relative_red"])

    # --- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (schema ``inspekt.profile/1``, documented in docs/drift.md)."""
        colour = bool(self.is_colour().any())
        channels = CHANNELS if colour else CHANNELS[:1]
        out: dict[str, Any] = {
            "schema": SCHEMA,
            "min_side": self.min_side,
            "n_images": len(self),
            "files": self.files,
            "properties": {k: [_num(x) for x in v] for k, v in self.values.items()},
            "pixel_histogram": {c: self.pixel_histogram[i].astype(np.int64).tolist() for i, c in enumerate(channels)},
            "image_histograms": {
                c: self.image_histograms[:, i].astype(np.int64).tolist() for i, c in enumerate(channels)
            },
            "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped],
        }
        if self.model:
            out["model"] = self.model
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "profile") -> Profile:
        """Read a dict written by ``to_dict``.

        Raises:
            InspektError: not a profile, or an unknown schema version.
        """
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else type(data).__name__
            raise InspektError(
                f"{where}: not an inspekt drift profile (schema {found!r}, expected {SCHEMA!r}); "
                "make one with `inspekt profile SOURCE --out FILE`"
            )
        try:
            n = int(data["n_images"])
            values = {
                k: np.array(
                    [np.nan if x is None else x for x in data["properties"].get(k, [None] * n)], dtype=np.float64
                )
                for k in PROPERTY_NAMES
            }
            hist = np.zeros((len(CHANNELS), HIST_BINS))
            coarse_hist = np.zeros((n, len(CHANNELS), COARSE_BINS))
            for i, c in enumerate(CHANNELS):
                if c in data["pixel_histogram"]:
                    hist[i] = data["pixel_histogram"][c]
                    coarse_hist[:, i] = np.asarray(data["image_histograms"][c], dtype=np.float64).reshape(
                        n, COARSE_BINS
                    )
            skipped = [SkippedFile(s["path"], s["reason"]) for s in data.get("skipped", [])]
            profile = cls(
                list(data["files"]), values, hist, coarse_hist, int(data["min_side"]), skipped, data.get("model")
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InspektError(f"{where}: damaged drift profile ({type(exc).__name__}: {exc}); make it again") from None
        if any(len(v) != n for v in values.values()) or len(profile.files) != n:
            raise InspektError(f"{where}: damaged drift profile (columns of different lengths); make it again")
        return profile

    def save(self, path: str | Path) -> Path:
        """Write the profile as JSON.

        Raises:
            InspektError: the path is a folder or cannot be written.
        """
        path = output_file(path, "profile.json")
        path.write_text(json.dumps(self.to_dict()), encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Profile:
        """Read a profile written by ``save``."""
        try:
            data = jsonio.loads(storage.as_path(path).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InspektError(f"{path}: cannot read drift profile ({exc})") from None
        return cls.from_dict(data, str(path))


def _num(x: float) -> float | None:
    return None if math.isnan(x) else float(x)  # full precision: JSON round-trips it exactly


# --- computing ------------------------------------------------------------------------------


def as_grey_if_grey(pixels: np.ndarray) -> np.ndarray:
    """A colour image whose three channels are equal (grey content saved as RGB) as its one channel:
    its colour properties are "not applicable", as for a greyscale file."""
    if (
        pixels.ndim == 3
        and np.array_equal(pixels[..., 0], pixels[..., 1])
        and np.array_equal(pixels[..., 1], pixels[..., 2])
    ):
        return np.ascontiguousarray(pixels[..., 0])
    return pixels


def profile_chunk(files: Sequence[str | tuple[str, bytes]], min_side: int = DEFAULT_MIN_SIDE) -> Profile:
    """Profile a list of files — paths, or ``(name, encoded bytes)`` for images held in memory — in
    this process; unreadable ones are skipped and reported."""
    from inspekt.io.decode import _resolve_max_pixels
    from inspekt.io.reduced import load_reduced

    decoded, skipped = [], []
    limit = _resolve_max_pixels(None)  # once per chunk, not per file
    for item in storage.read_ahead(files):  # remote files arrive as named in-memory streams, fetched ahead
        if hasattr(item, "getvalue"):
            item = (item.name, item.getvalue())
        name, source = item if isinstance(item, tuple) else (str(item), item)
        try:
            pixels, size = load_reduced(source, min_side, limit)
        except ImageLoadError as exc:
            skipped.append(SkippedFile(name, str(exc).split(": ", 1)[-1]))
            continue
        decoded.append((name, as_grey_if_grey(pixels), size))
    if not decoded:
        return replace(Profile.empty(min_side), skipped=skipped)
    stack = Stack([d[1] for d in decoded], [d[2] for d in decoded])
    hists = stack.histograms
    return Profile([d[0] for d in decoded], compute(stack), hists.sum(axis=0), coarse(hists), min_side, skipped)


def profile_images(
    files: Sequence[str | os.PathLike] | str | os.PathLike,
    *,
    workers: int = 1,
    min_side: int = DEFAULT_MIN_SIDE,
    progress: Callable[[int], None] | None = None,
    client=None,
) -> Profile:
    """Profile images, in ``workers`` processes or on a Dask cluster.

    Args:
        files: image paths, or one folder (its images, sub-folders included) or image file.
        workers: processes (1 = in this process; 0 = auto: one per CPU core, at most ``AUTO_WORKERS``,
            for ``AUTO_FROM`` images or more, else this process).
        min_side: working resolution rule (``inspekt.io.reduced``); 0 = full resolution.
        progress: called with the number of files finished, after each chunk.
        client: a ``distributed.Client``: profile on its cluster instead (``workers`` is then unused).

    Returns:
        The profile, files in the given order (minus the skipped ones, listed in ``skipped``).
    """
    if workers < 0:
        raise ConfigError(f"workers must be 0 (auto) or more, not {workers}")
    if isinstance(files, (str, os.PathLike)):  # one path, not a sequence of its characters
        files = list_images(files) if storage.as_path(files).is_dir() else [files]
    files = list(files)
    arrays = [i for i, f in enumerate(files) if not isinstance(f, (str, os.PathLike, storage.RemotePath))]
    if arrays:  # an image's pixels turned into a "file name" failed deep inside with OSError: name too long
        raise ConfigError(
            f"item {arrays[0]} of the images to profile is a {type(files[arrays[0]]).__name__}, not a path: drift "
            "checks profile image files; save the images first (inspekt.io.save_image) or give their folder"
        )
    files = [str(f) for f in files]
    if workers == 0:  # measured on dice (5,904 128-px JPEGs, 2 cores): 0.66 s in this process, 0.39-0.43 s in 2
        workers = min(os.cpu_count() or 1, AUTO_WORKERS) if len(files) >= AUTO_FROM else 1
    if client is not None:
        return profile_on(client, files, min_side, progress)
    from inspekt.cluster import chunks_for

    chunks = chunks_for(files, workers)
    parts = []
    if workers == 1 or len(chunks) == 1:
        for chunk in chunks:
            parts.append(profile_chunk(chunk, min_side))
            if progress:
                progress(len(chunk))
        return Profile.concat(parts) if parts else Profile.empty(min_side)
    import multiprocessing
    import sys

    # fork is fast; it is unsafe once a threaded runtime (torch, onnxruntime) is loaded in this
    # process, and then the forkserver starts clean workers instead
    threaded = any(name in sys.modules for name in ("torch", "onnxruntime"))
    context = multiprocessing.get_context("forkserver" if threaded else "fork")
    try:
        with ProcessPoolExecutor(workers, mp_context=context) as pool:
            for chunk, part in zip(chunks, pool.map(profile_chunk, chunks, [min_side] * len(chunks))):
                parts.append(part)
                if progress:
                    progress(len(chunk))
    except BrokenProcessPool:
        raise ConfigError(
            f"profiling in {workers} worker processes failed: a worker stopped"
            + (
                ". Each worker started through the fork server imports the calling script again, so a script "
                "that profiles with workers > 1 after torch or onnxruntime is loaded must keep its top-level "
                'code under `if __name__ == "__main__":` (or pass workers=1)'
                if threaded
                else " (out of memory?); pass workers=1 to profile in this process"
            )
        ) from None
    return Profile.concat(parts)


def profile_on(client, files: Sequence[str], min_side: int, progress: Callable[[int], None] | None = None):
    """The drift profile of ``files``, computed on the cluster: equal to ``profile_images(files)``.

    Returns:
        The merged ``Profile``, files in the given order (minus the skipped ones).
    """
    # (name, path) pairs where the worker must open another spelling: the profile keeps the names as given
    items = [name if for_workers(name) == name else (name, for_workers(name)) for name in map(str, files)]
    chunks = chunks_for(items, slots(client))
    parts = []
    for chunk, part in zip(chunks, map_ordered(client, profile_chunk, chunks, min_side)):
        parts.append(part)
        if progress:
            progress(len(chunk))
    return Profile.concat(parts) if parts else Profile.empty(min_side)


MAX_REFERENCE_IMAGES = 2000  # a bundle's reference profile: a seeded sample beyond this


def sample_files(files: list[str], sample: int | None, seed: int) -> list[str]:
    """A seeded random ``sample`` of the files (in their original order); all when ``sample`` is None."""
    if sample is None or len(files) <= sample:
        return files
    index = np.sort(np.random.default_rng(seed).choice(len(files), sample, replace=False))
    return [files[i] for i in index]
