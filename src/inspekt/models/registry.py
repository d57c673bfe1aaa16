"""One registry of models by name: ``create_model("tiny_cnn", num_classes=4)``.

Builders take keyword-only hyper-parameters; unknown names and unknown parameters raise
with a "did you mean". Nothing here knows about files, the CLI or the app.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from inspekt import _compat
from inspekt.errors import ConfigError, did_you_mean

_compat.apply()  # before anything below may import timm / torchvision


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: its name, task, builder and one-line description."""

    name: str
    task: str
    builder: Callable[..., Any]
    description: str

    def parameters(self) -> dict[str, Any]:
        """The builder's keyword parameters and their defaults (``inspect.Parameter.empty`` if required)."""
        return {p.name: p.default for p in inspect.signature(self.builder).parameters.values()}


_REGISTRY: dict[str, ModelEntry] = {}
_RESOLVERS: dict[str, Callable[[str], ModelEntry]] = {}


def register_model(name: str, *, task: str, description: str) -> Callable:
    """Decorator that registers a model builder under ``name`` for ``task``."""

    def decorate(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelEntry(name, task, builder, description)
        return builder

    return decorate


def get_entry(name: str, task: str | None = None) -> ModelEntry:
    """Look a model up by name (optionally requiring a task).

    Raises:
        ConfigError: unknown name, or a model of another task.
    """
    entry = _REGISTRY.get(name) or _resolved(name)
    if entry is None:
        choices = list_models(task)
        raise ConfigError(f"unknown model {name!r}.{did_you_mean(name, choices)} Available: {', '.join(choices)}")
    if task is not None and entry.task != task:
        raise ConfigError(f"model {name!r} is a {entry.task} model, not {task}; see `inspekt models`")
    return entry


def register_resolver(prefix: str, resolve: Callable[[str], ModelEntry]) -> None:
    """Let ``resolve`` build the entry of any name starting with ``prefix`` on first use (e.g. timm/<arch>)."""
    _RESOLVERS[prefix] = resolve


def _resolved(name: str) -> ModelEntry | None:
    for prefix, resolve in _RESOLVERS.items():
        if name.startswith(prefix):
            _REGISTRY[name] = resolve(name)
            return _REGISTRY[name]
    return None


def create_model(name: str, **params: Any) -> Any:
    """Build a registered model with keyword hyper-parameters.

    Args:
        name: registered model name.
        **params: the builder's keyword parameters.

    Returns:
        The built model (a ``torch.nn.Module`` for networks).

    Raises:
        ConfigError: unknown model, unknown parameter, or missing required parameter.
    """
    entry = get_entry(name)
    known = entry.parameters()
    for key in params:
        if key not in known:
            raise ConfigError(
                f"model {name!r} has no parameter {key!r}.{did_you_mean(key, known)} Parameters: {', '.join(known)}"
            )
    missing = [k for k, v in known.items() if v is inspect.Parameter.empty and k not in params]
    if missing:
        raise ConfigError(f"model {name!r} needs parameter(s): {', '.join(missing)}")
    try:
        return entry.builder(**params)
    except (TypeError, ValueError, RuntimeError) as exc:  # the builder rejected a value
        shown = ", ".join(f"{k}={v!r}" for k, v in params.items())
        raise ConfigError(f"model {name!r} cannot be built with {shown}: {exc}") from exc


def list_models(task: str | None = None) -> list[str]:
    """Names of the registered models, optionally for one task, sorted."""
    return sorted(n for n, e in _REGISTRY.items() if task is None or e.task == task)
