"""Starting weights for training: a local file (safetensors, or timm's state-dict format) or
timm's published weights (needs the internet; fails fast with advice when offline).

Tensors are matched by name and shape (a segmentation model's ``encoder.*`` tensors also match
the names of a plain backbone file, e.g. timm's resnet18 weights for a UNet over resnet18): a classifier
head of another class count and a stem
of another channel count are adapted or left at their fresh initialisation, and the caller
is told how many tensors were loaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from inspekt.errors import ConfigError

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
ENCODER = "encoder."


@dataclass(frozen=True)
class PretrainedReport:
    """What ``load_pretrained`` did."""

    source: str
    loaded: int
    skipped: tuple[str, ...]
    adapted: tuple[str, ...]

    def summary(self) -> str:
        """One line for the console."""
        parts = [f"loaded {self.loaded} tensors from {self.source}"]
        if self.adapted:
            parts.append(f"adapted {len(self.adapted)} to the input channels ({', '.join(self.adapted[:3])})")
        if self.skipped:
            parts.append(
                f"kept {len(self.skipped)} freshly initialised ({', '.join(self.skipped[:3])}"
                f"{', ...' if len(self.skipped) > 3 else ''})"
            )
        return "; ".join(parts)


def _read_file(path: Path) -> dict:
    import torch

    if not path.is_file():
        raise ConfigError(f"--pretrained {path}: no such file; give a .safetensors file or a timm .pth/.bin state dict")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(os.fspath(path))
        if path.suffix in TORCH_SUFFIXES:
            state = torch.load(os.fspath(path), map_location="cpu", weights_only=True)  # tensors only, no code
        else:
            raise ConfigError(
                f"--pretrained {path}: unknown weight format {path.suffix!r}; use .safetensors, "
                f"{', '.join(TORCH_SUFFIXES)}"
            )
    except ConfigError:
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200]
        raise ConfigError(f"--pretrained {path}: not a readable weight file ({detail})") from exc
    for key in ("state_dict", "model", "model_state"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ConfigError(f"--pretrained {path}: expected a mapping of tensor names to tensors")
    return state


def _published(architecture: str) -> dict:
    """timm's published weights; offline this fails within seconds with what to do instead."""
    import timm

    arch = architecture.removeprefix("timm/")
    if not timm.is_model(arch):
        raise ConfigError(
            f"--pretrained timm: {architecture} is not a timm architecture; train it from scratch "
            "or give --pretrained FILE"
        )
    try:
        _check_hub_reachable()
        return timm.create_model(arch, pretrained=True).state_dict()
    except Exception as exc:
        detail = " ".join(str(exc).split())[:160]
        raise ConfigError(
            f"--pretrained timm: could not get timm's published weights for {arch} ({type(exc).__name__}: "
            f'{detail}). Without internet, fetch them elsewhere (python -c "import timm, safetensors.torch as s; '
            f"s.save_file(timm.create_model('{arch}', pretrained=True).state_dict(), '{arch}.safetensors')\") "
            f"and pass --pretrained {arch}.safetensors"
        ) from exc


def _check_hub_reachable(timeout: float = 3.0) -> None:
    """Fail at once when the weights hub cannot be reached (the hub client would retry for a minute)."""
    import socket
    from urllib.parse import urlparse

    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ConnectionError("HF_HUB_OFFLINE is set")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout).close()
    except OSError as exc:
        raise ConnectionError(f"{endpoint.hostname} is not reachable: {exc}") from exc


def load_pretrained(network, architecture: str, source: str) -> PretrainedReport:
    """Load starting weights into ``network`` in place.

    Args:
        network: the freshly built torch module.
        architecture: its registry name (for timm's published weights).
        source: ``"timm"`` or the path of a weight file.

    Returns:
        Counts of loaded, adapted and skipped tensors.

    Raises:
        ConfigError: unreadable file, unavailable published weights, or no tensor fits the network.
    """
    state = _published(architecture) if source == "timm" else _read_file(Path(source))
    own = network.state_dict()
    fitted, skipped, adapted = {}, [], []
    for name, target in own.items():
        tensor = state.get(name)
        if tensor is None and name.startswith(ENCODER):  # a plain backbone file for a segmentation encoder
            tensor = state.get(name.removeprefix(ENCODER))
        if tensor is None:
            skipped.append(name)
        elif tuple(tensor.shape) == tuple(target.shape):
            fitted[name] = tensor
        elif tensor.ndim == 4 and target.ndim == 4 and tensor.shape[0] == target.shape[0] and target.shape[1] == 1:
            fitted[name] = tensor.sum(dim=1, keepdim=True)  # an RGB stem for grey input: sum the channels
            adapted.append(name)
        else:
            skipped.append(name)
    if not fitted:
        raise ConfigError(
            f"--pretrained {source}: none of its {len(state)} tensors fit {architecture} "
            "(names or shapes differ); use weights made for this architecture"
        )
    network.load_state_dict(fitted, strict=False)
    return PretrainedReport(source, len(fitted), tuple(skipped), tuple(adapted))
