"""Image enhancement: small pure functions in one table, presets, and a serialisable ``Pipeline``.

Each step takes a uint8 image (HxW grey or HxWx3 RGB) and keyword parameters and returns a uint8
image with the same number of channels. The table (``STEPS``) also describes every parameter's
range and default, so a user interface can build its controls from it and a "what-if" sweep can
walk a parameter's range. A pipeline is a list of ``(step, params)`` validated when it is built;
it goes between decoding and the card's preprocessing (``Predictor.predict(..., enhance=...)``).

    pipe = Pipeline.parse("clahe:clip_limit=3,tile_grid=8 + median:ksize=3")   # or a preset name
    enhanced = pipe(image); pipe.to_dict()                                       # JSON-ready
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inspekt import jsonio
from inspekt.deadline import Deadline
from inspekt.errors import ConfigError, did_you_mean

MAX_STEPS = 16
INTERPOLATIONS = ("nearest", "linear", "cubic", "area", "lanczos")


def _cv2():
    import cv2

    return cv2


def _on_luma(image: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Apply a grey-level operation to a grey image, or to the luma of a colour one (hue kept)."""
    if image.ndim == 2:
        return fn(image)
    cv2 = _cv2()
    ycrcb = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    ycrcb[:, :, 0] = fn(np.ascontiguousarray(ycrcb[:, :, 0]))
    return cv2.cvtColor(ycrcb, cv2.COLOR_YCrCb2RGB)


def resize(image: np.ndarray, *, scale: float = 1.0, interpolation: str = "area") -> np.ndarray:
    """Resample by ``scale`` (both sides) with the chosen interpolation."""
    cv2 = _cv2()
    h, w = image.shape[:2]
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    flags = {
        "nearest": cv2.INTER_NEAREST,
        "linear": cv2.INTER_LINEAR,
        "cubic": cv2.INTER_CUBIC,
        "area": cv2.INTER_AREA,
        "lanczos": cv2.INTER_LANCZOS4,
    }
    return cv2.resize(image, size, interpolation=flags[interpolation])


def equalize(image: np.ndarray) -> np.ndarray:
    """Global histogram equalisation (of the luma for colour images)."""
    return _on_luma(image, _cv2().equalizeHist)


def clahe(image: np.ndarray, *, clip_limit: float = 2.0, tile_grid: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation on a ``tile_grid`` x ``tile_grid`` grid."""
    op = _cv2().createCLAHE(clipLimit=clip_limit, tileGridSize=(tile_grid, tile_grid))
    return _on_luma(image, op.apply)


def brightness_contrast(image: np.ndarray, *, brightness: float = 0.0, contrast: float = 1.0) -> np.ndarray:
    """``contrast * (x - 128) + 128 + brightness``, clipped to 0-255."""
    out = contrast * (image.astype(np.float32) - 128.0) + 128.0 + brightness
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def gamma(image: np.ndarray, *, gamma: float = 1.0) -> np.ndarray:
    """Gamma curve ``255 * (x / 255) ** (1 / gamma)``: above 1 brightens the shadows."""
    table = np.clip(np.rint(255.0 * (np.arange(256) / 255.0) ** (1.0 / gamma)), 0, 255).astype(np.uint8)
    return table[image]


def median(image: np.ndarray, *, ksize: int = 3) -> np.ndarray:
    """Median filter (``ksize`` odd): removes salt-and-pepper noise, keeps edges."""
    return _cv2().medianBlur(image, ksize)


def nl_means(image: np.ndarray, *, h: float = 7.0) -> np.ndarray:
    """Non-local means denoising with filter strength ``h`` (slower, keeps texture better)."""
    cv2 = _cv2()
    if image.ndim == 2:
        return cv2.fastNlMeansDenoising(image, None, h, 7, 21)
    return cv2.fastNlMeansDenoisingColored(image, None, h, h, 7, 21)


def unsharp(image: np.ndarray, *, amount: float = 1.0, radius: float = 2.0) -> np.ndarray:
    """Unsharp mask: ``x + amount * (x - gaussian_blur(x, radius))``."""
    blurred = _cv2().GaussianBlur(image, (0, 0), radius).astype(np.float32)
    out = image.astype(np.float32) + amount * (image.astype(np.float32) - blurred)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def adaptive_threshold(image: np.ndarray, *, block_size: int = 31, c: float = 5.0) -> np.ndarray:
    """Binary preview: a pixel is white when brighter than its ``block_size`` neighbourhood's
    Gaussian-weighted mean minus ``c`` (grey output, replicated to RGB for colour input)."""
    cv2 = _cv2()
    grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    binary = cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_GAUSSIAN_C, cv2.THRESH_BINARY, block_size, c)
    return binary if image.ndim == 2 else np.dstack([binary] * 3)


@dataclass(frozen=True)
class Param:
    """One parameter of a step: its range (inclusive), default, and slider step; or its choices."""

    name: str
    default: Any
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    odd: bool = False  # odd integers only (kernel sizes)

    @property
    def integer(self) -> bool:
        return isinstance(self.default, int) and not self.choices

    def check(self, step: str, value: Any) -> Any:
        """The value converted to the parameter's type, or a ConfigError naming step, parameter and range."""
        where = f"enhancement step {step!r}: {self.name}={value!r}"
        if self.choices:
            if value not in self.choices:
                raise ConfigError(
                    f"{where} is not one of {', '.join(self.choices)}.{did_you_mean(str(value), self.choices)}"
                )
            return value
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where} is not a number") from None
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number in {self.low:g}..{self.high:g}")
        if self.integer:
            if number != int(number):
                raise ConfigError(f"{where} must be a whole number")
            number = int(number)
        if not self.low <= number <= self.high:
            raise ConfigError(f"{where} is outside {self.low:g}..{self.high:g}")
        if self.odd and number % 2 == 0:
            raise ConfigError(f"{where} must be odd (e.g. {number + 1})")
        return number


@dataclass(frozen=True)
class Step:
    """One row of the step table."""

    name: str
    fn: Callable[..., np.ndarray]
    params: tuple[Param, ...]
    label: str
    cost: float = 0.01  # CPU seconds per megapixel on one core (measured on a 2-core AVX2 machine, rounded up)
    memory: float = 2.0  # bytes held while it runs, per byte of the image (input and output: 2)

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        names = [p.name for p in self.params]
        raise ConfigError(
            f"enhancement step {self.name!r} has no parameter {name!r} "
            f"(it takes: {', '.join(names) or 'none'}).{did_you_mean(name, names)}"
        )


STEPS: dict[str, Step] = {
    s.name: s
    for s in (
        Step(
            "resize",
            resize,
            (Param("scale", 1.0, 0.1, 4.0, 0.05), Param("interpolation", "area", choices=INTERPOLATIONS)),
            "Resize / resample",
            cost=0.01,
        ),
        Step("equalize", equalize, (), "Histogram equalisation"),
        Step("clahe", clahe, (Param("clip_limit", 2.0, 0.5, 10.0, 0.1), Param("tile_grid", 8, 2, 32, 1)), "CLAHE"),
        Step(
            "brightness_contrast",
            brightness_contrast,
            (Param("brightness", 0.0, -100.0, 100.0, 1.0), Param("contrast", 1.0, 0.2, 3.0, 0.05)),
            "Brightness / contrast",
            cost=0.03,
            memory=10.0,  # a float32 copy
        ),
        Step("gamma", gamma, (Param("gamma", 1.0, 0.2, 5.0, 0.05),), "Gamma"),
        Step("median", median, (Param("ksize", 3, 3, 15, 2, odd=True),), "Denoise: median"),
        Step("nl_means", nl_means, (Param("h", 7.0, 1.0, 30.0, 0.5),), "Denoise: non-local means", cost=2.5),
        Step(
            "unsharp",
            unsharp,
            (Param("amount", 1.0, 0.0, 3.0, 0.05), Param("radius", 2.0, 0.5, 10.0, 0.1)),
            "Sharpen (unsharp mask)",
            cost=0.06,
            memory=18.0,  # three float32 copies
        ),
        Step(
            "adaptive_threshold",
            adaptive_threshold,
            (Param("block_size", 31, 3, 101, 2, odd=True), Param("c", 5.0, -20.0, 20.0, 0.5)),
            "Adaptive threshold preview",
        ),
    )
}

PRESETS: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "CLAHE + Denoise": [("clahe", {"clip_limit": 2.0, "tile_grid": 8}), ("median", {"ksize": 3})],
    "Sharpen + Gamma": [("unsharp", {"amount": 1.0, "radius": 2.0}), ("gamma", {"gamma": 1.2})],
    "Equalise": [("equalize", {})],
    "Low light": [("gamma", {"gamma": 1.8}), ("nl_means", {"h": 7.0})],
    "Edges": [("clahe", {"clip_limit": 3.0, "tile_grid": 8}), ("adaptive_threshold", {"block_size": 31, "c": 5.0})],
}


def _step(name: str) -> Step:
    if name not in STEPS:
        raise ConfigError(
            f"unknown enhancement step {name!r}; choose from {', '.join(STEPS)}.{did_you_mean(name, STEPS)}"
        )
    return STEPS[name]


@dataclass(frozen=True)
class Pipeline:
    """An ordered list of validated ``(step, params)``; calling it applies them in turn."""

    ops: tuple[tuple[str, dict[str, Any]], ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, ops: list[tuple[str, dict[str, Any]]] | tuple = ()) -> Pipeline:
        """Validate steps and parameters (defaults filled in).

        Raises:
            ConfigError: unknown step or parameter, or a value outside its range.
        """
        if len(ops) > MAX_STEPS:
            raise ConfigError(
                f"an enhancement pipeline has at most {MAX_STEPS} steps, this one has {len(ops)}; "
                "a longer chain is almost always a mistake (repeat a step's effect with its parameters instead)"
            )
        checked = []
        for name, params in ops:
            step = _step(name)
            values = {p.name: p.default for p in step.params}
            for key, value in (params or {}).items():
                values[key] = step.param(key).check(name, value)
            checked.append((name, values))
        return cls(tuple(checked))

    def cost(self, pixels: float) -> float:
        """Estimated CPU seconds to run on an image of ``pixels`` (from the steps' measured ``cost``,
        following ``resize``), for limits on the work one request may ask for."""
        size, seconds = float(pixels), 0.0
        for name, params in self.ops:
            seconds += STEPS[name].cost * size / 1e6
            if name == "resize":
                size *= float(params["scale"]) ** 2
        return seconds

    def footprint(self) -> float:
        """Peak memory while running, as a multiple of the input image's (``growth`` times the
        hungriest step's ``memory``; 1 for the empty pipeline)."""
        if not self.ops:
            return 1.0
        return self.growth() * max(STEPS[name].memory for name, _ in self.ops) / 2

    def growth(self) -> float:
        """The largest factor by which the pipeline multiplies an image's pixel count along the way
        (``resize`` steps; 1 when nothing enlarges it), for pixel limits that must hold after it."""
        size, peak = 1.0, 1.0
        for name, params in self.ops:
            if name == "resize":
                size *= float(params["scale"]) ** 2
                peak = max(peak, size)
        return peak

    @classmethod
    def preset(cls, name: str) -> Pipeline:
        """A named preset (``PRESETS``)."""
        if name not in PRESETS:
            raise ConfigError(
                f"unknown enhancement preset {name!r}; choose from {', '.join(PRESETS)}.{did_you_mean(name, PRESETS)}"
            )
        return cls.of(PRESETS[name])

    @classmethod
    def parse(cls, spec: str) -> Pipeline:
        """A preset name, a JSON file written by ``save``, or ``"step:key=value,key=value + step2"``."""
        spec = spec.strip()
        if spec in PRESETS:
            return cls.preset(spec)
        if spec.endswith(".json"):
            try:
                data = jsonio.loads(Path(spec).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ConfigError(f"{spec}: cannot read enhancement pipeline ({exc})") from None
            try:
                return cls.from_dict(data)
            except ConfigError as exc:
                raise ConfigError(f"{spec}: {exc}") from None
        ops = []
        for part in filter(None, (p.strip() for p in spec.split("+"))):
            name, _, args = part.partition(":")
            params = {}
            for item in filter(None, (a.strip() for a in args.split(","))):
                key, sep, value = item.partition("=")
                if not sep:
                    raise ConfigError(f"enhancement {part!r}: write parameters as key=value, not {item!r}")
                params[key.strip()] = _literal(value.strip())
            ops.append((name.strip(), params))
        return cls.of(ops)

    def __call__(self, image: np.ndarray, deadline: Deadline | None = None) -> np.ndarray:
        """Apply the steps in turn; ``deadline`` is checked before each (``Cancelled`` when it ran out)."""
        for i, (name, params) in enumerate(self.ops, 1):
            if deadline is not None:
                deadline.check(f"enhancing (step {i} of {len(self.ops)}, {name})")
            image = STEPS[name].fn(image, **params)
        return image

    def __bool__(self) -> bool:
        return bool(self.ops)

    def with_param(self, index: int, name: str, value: Any) -> Pipeline:
        """A copy with one parameter of step ``index`` changed (for sweeps and sliders)."""
        ops = [(n, dict(p)) for n, p in self.ops]
        ops[index][1][name] = value
        return Pipeline.of(ops)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"steps": [{"step": name, "params": {...}}, ...]}``."""
        return {"steps": [{"step": name, "params": dict(params)} for name, params in self.ops]}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Pipeline:
        """Read what ``to_dict`` wrote."""
        try:
            return cls.of([(s["step"], s.get("params", {})) for s in data["steps"]])
        except (KeyError, TypeError):
            raise ConfigError('an enhancement pipeline is {"steps": [{"step": NAME, "params": {...}}, ...]}') from None

    def save(self, path: str | Path) -> Path:
        """Write the pipeline as JSON."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    def describe(self) -> str:
        """One line, e.g. ``clahe(clip_limit=2, tile_grid=8) -> median(ksize=3)``; ``none`` when empty."""
        if not self.ops:
            return "none"
        return " -> ".join(
            f"{n}({', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in p.items())})"
            for n, p in self.ops
        )


def _literal(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text
