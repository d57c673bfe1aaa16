"""The workbench's model picker: one entry per bundle in the workspace (however many copies of it
there are), and the one it starts on (the user's last choice, kept in the workspace; else the best
evaluated; else the newest)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from inspekt.bundle import SUFFIX

SETTINGS_FILE = ".inspekt-app.json"  # in the workspace: the model the user chose last


def find_bundles(root: Path) -> dict[str, Path]:
    """Bundles in the workspace: ``models/*.inspekt`` (and bundle folders there) and every finished
    run's ``runs/<task>/<name>/bundle``; label -> path, newest first."""
    found: list[tuple[float, str, Path]] = []
    for path in sorted((root / "models").glob("*")):
        if path.suffix == SUFFIX or (path / "card.json").is_file():
            found.append((path.stat().st_mtime, f"models/{path.name}", path))
    for card in sorted(root.glob("runs/*/*/bundle/card.json")):
        run = card.parent.parent
        found.append((card.stat().st_mtime, f"runs/{run.parent.name}/{run.name}", card.parent))
    return {label: path for _, label, path in sorted(found, key=lambda t: -t[0])}


def stamp(path: Path) -> float:
    """When a bundle last changed (a folder's card and graph are replaced in place by a retrain)."""
    files = [path / "card.json", path / "model.onnx"] if path.is_dir() else [path]
    return max((f.stat().st_mtime for f in files if f.exists()), default=0.0)


@dataclass(frozen=True)
class ModelRef:
    """A bundle in the model picker: its label, path, the sha256 of its ``model.onnx`` and its
    identity (the card and the graph: two copies of one bundle share it, a new threshold does not)."""

    label: str
    path: Path
    digest: str
    identity: str
    metric: float | None = None  # its task's first headline metric on validation, when the card has it
    sane: bool = True  # passed the sanity check its training ran (never the default otherwise)

    @property
    def short(self) -> str:
        return self.digest.split(":")[-1][:8] or "unread"


@functools.lru_cache(maxsize=256)
def _facts(path: str, stamp: float) -> tuple[str, str, float | None, bool]:
    """(model.onnx digest, identity, headline metric, sanity passed) of a bundle from its card (the
    file's own sha256 for cards without digests); a bundle that cannot be opened is its own identity
    (its error shows when it is chosen)."""
    from inspekt.bundle import digest, graph_digest, open_bundle
    from inspekt.card import passed_sanity
    from inspekt.tasks import get_task

    try:
        bundle = open_bundle(path)
        card = bundle.card
        graph = graph_digest(bundle)
    except Exception:
        return "", f"path:{path}", None, True
    try:
        key = get_task(card.task).headline[0]
        metric = card.metrics.get(f"val_{key}", card.metrics.get(key))
    except Exception:
        metric = None
    return graph, digest(card.to_json().encode() + graph.encode()), metric, passed_sanity(card)


def _reads(ref: ModelRef) -> bool:
    """Whether a bundle's model.onnx is the one its card names (a copy whose graph was replaced is
    not the same model as the original, whatever its card says); checked once per file version."""
    return _graph_reads(str(ref.path), stamp(ref.path))


@functools.lru_cache(maxsize=256)
def _graph_reads(path: str, stamp: float) -> bool:
    from inspekt.bundle import ONNX, open_bundle

    try:
        open_bundle(path).read(ONNX)
        return True
    except Exception:
        return False


def catalogue(root: Path, uploaded: tuple[str, Path] | None = None) -> dict[str, ModelRef]:
    """The model picker's entries, newest first: one per bundle however many copies the workspace
    holds (``models/x.inspekt`` and the run it was copied from are one entry, named by ``models/``);
    an uploaded bundle comes first, under its own label."""
    bundles = find_bundles(root)
    order = {label: k for k, label in enumerate(bundles)}
    found = sorted(bundles.items(), key=lambda item: not item[0].startswith("models/"))  # stable
    entries: dict[str, ModelRef] = {}
    seen: dict[str, ModelRef] = {}  # identity -> the readable entry listed for it
    for label, path in [uploaded] + found if uploaded else found:
        ref = entries[label] = ModelRef(label, path, *_facts(str(path), stamp(path)))
        first = seen.setdefault(ref.identity, ref)
        if first is not ref and _reads(ref) and _reads(first):
            del entries[label]  # another copy of a bundle already listed
        elif first is not ref and not _reads(first):
            seen[ref.identity] = ref
    return dict(sorted(entries.items(), key=lambda entry: order.get(entry[0], -1)))


def default_model(root: Path, entries: dict[str, ModelRef]) -> str:
    """The label the picker starts on: the model the user chose last (in this workspace), else the
    best evaluated one (its task's first headline metric on validation), else the newest; a model that
    failed its training's sanity check (``card.sanity``) only when there is no other."""
    wanted = _settings(root).get("model")
    chosen = [label for label, ref in entries.items() if ref.identity == wanted]
    if chosen:
        return chosen[0]
    sane = [ref for ref in entries.values() if ref.sane] or list(entries.values())  # a failed run: never by default
    evaluated = [ref for ref in sane if ref.metric is not None]
    return max(evaluated, key=lambda ref: ref.metric).label if evaluated else sane[0].label


def _settings(root: Path) -> dict:
    try:
        found = json.loads((root / SETTINGS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def remember(root: Path, ref: ModelRef) -> None:
    """Keep the user's choice of model in the workspace (a read-only workspace just does not remember)."""
    try:
        (root / SETTINGS_FILE).write_text(json.dumps({**_settings(root), "model": ref.identity, "label": ref.label}))
    except OSError:
        pass
