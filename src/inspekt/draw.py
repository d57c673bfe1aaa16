"""Small drawing helpers for saved predictions: a label banner, mask overlays (OpenCV, no torch)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspekt.transforms import to_channels


def banner(image: np.ndarray, text: str) -> np.ndarray:
    """The image as RGB with ``text`` on a dark strip along its top edge, scaled to the image width.

    Args:
        image: HxW or HxWx3 uint8.
        text: one line, e.g. ``"scratch 0.93"``.

    Returns:
        A new HxWx3 uint8 array of the same size.
    """
    out = to_channels(image, 3).copy()
    height, width = out.shape[:2]
    scale = max(0.3, min(2.0, width / 640))
    thickness = max(1, round(scale * 1.5))
    (text_w, text_h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    strip = min(height, text_h + base + 8)
    out[:strip] = (out[:strip] * 0.35).astype(np.uint8)
    cv2.putText(
        out,
        text,
        (4, min(height - 1, text_h + 4)),
        cv2.FONT_HERSHEY_SIMPLEX,
        scale,
        (255, 255, 255),
        thickness,
        cv2.LINE_AA,
    )
    return out


# Fill colours of mask classes 1, 2, ... (RGB), chosen to stand out on grey and colour images.
PALETTE = (
    (255, 40, 40),
    (255, 210, 0),
    (0, 200, 255),
    (255, 0, 200),
    (60, 220, 60),
    (255, 140, 0),
    (150, 90, 255),
    (0, 255, 170),
)


def class_colour(index: int) -> tuple[int, int, int]:
    """The overlay colour of mask class ``index`` (1-based; class 0 is background and never drawn)."""
    return PALETTE[(index - 1) % len(PALETTE)]


def overlay_mask(image: np.ndarray, mask: np.ndarray, *, opacity: float = 0.4) -> np.ndarray:
    """The image as RGB with each mask class filled at ``opacity`` and outlined in its colour.

    Args:
        image: HxW or HxWx3 uint8.
        mask: HxW class-index map of the same size (0 = background).
        opacity: fill opacity in [0, 1]; the outline is always opaque.

    Raises:
        ValueError: a mask of another size, or an opacity outside [0, 1].
    """
    if mask.shape != image.shape[:2]:
        raise ValueError(f"mask {mask.shape} and image {image.shape[:2]} differ in size")
    if not 0 <= opacity <= 1:
        raise ValueError(f"opacity {opacity} must lie in [0, 1]")
    out = to_channels(image, 3).copy()
    thickness = max(1, round(max(mask.shape) / 400))
    for index in (int(v) for v in np.unique(mask) if v):
        region = mask == index
        colour = np.array(class_colour(index), dtype=np.float32)
        out[region] = (out[region] * (1 - opacity) + colour * opacity).astype(np.uint8)
        contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(out, contours, -1, class_colour(index), thickness, cv2.LINE_AA)
    return out


def draw_boxes(
    image: np.ndarray, boxes: list[dict], classes: tuple[str, ...], *, colour: tuple[int, int, int] | None = None
) -> np.ndarray:
    """The image as RGB with each box outlined in its class colour and captioned "class score".

    Args:
        image: HxW or HxWx3 uint8.
        boxes: dicts with ``class``, ``box`` [x0, y0, x1, y1] (pixels) and optionally ``score``.
        classes: the model's box classes (their order picks the colours).
        colour: one colour for every box (e.g. green for true boxes) instead of the class colours.
    """
    out = to_channels(image, 3).copy()
    thickness = max(1, round(max(out.shape[:2]) / 300))
    scale = max(0.3, min(1.2, max(out.shape[:2]) / 900))
    for box in boxes:
        index = classes.index(box["class"]) + 1 if box["class"] in classes else 1
        drawn = colour or class_colour(index)
        x0, y0, x1, y1 = (int(round(v)) for v in box["box"])
        cv2.rectangle(out, (x0, y0), (max(x0, x1 - 1), max(y0, y1 - 1)), drawn, thickness, cv2.LINE_8)
        caption = box["class"] + (f" {box['score']:.2f}" if "score" in box else "")
        cv2.putText(out, caption, (x0, max(10, y0 - 3)), cv2.FONT_HERSHEY_SIMPLEX, scale, drawn, 1, cv2.LINE_AA)
    return out


COLORMAP = cv2.COLORMAP_JET  # heat maps: Grad-CAM and anomaly maps


def heat_overlay(
    image: np.ndarray,
    heat: np.ndarray,
    opacity: float = 0.5,
    seen: np.ndarray | None = None,
    outline: np.ndarray | None = None,
) -> np.ndarray:
    """Colour a heat map and blend it over the image.

    Args:
        image: HxW or HxWx3 uint8 original image.
        heat: HxW float in [0, 1], same size.
        opacity: weight of the heat map in [0, 1].
        seen: HxW bool, the pixels inside the model input (the rest stays plain); default all.
        outline: HxW mask whose regions are outlined in white (e.g. anomalous pixels).

    Returns:
        HxWx3 uint8 RGB overlay.
    """
    rgb = to_channels(image, 3)
    coloured = cv2.cvtColor(
        cv2.applyColorMap(np.uint8(np.round(np.clip(heat, 0, 1) * 255)), COLORMAP), cv2.COLOR_BGR2RGB
    )
    mixed = cv2.addWeighted(rgb, 1 - opacity, coloured, opacity, 0)
    out = mixed if seen is None else np.where(seen[:, :, None], mixed, rgb)
    if outline is not None and outline.any():
        contours, _ = cv2.findContours((outline > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        out = np.ascontiguousarray(out)
        cv2.drawContours(out, contours, -1, (255, 255, 255), max(1, round(max(heat.shape) / 400)), cv2.LINE_AA)
    return out


def plot_prediction(prediction, image: np.ndarray, *, ax=None):
    """Draw an image with its predicted label, confidence and runner-up classes (notebooks).

    Args:
        prediction: an ``inspekt.results.Prediction``.
        image: the decoded image (HxW or HxWx3 uint8).
        ax: a matplotlib Axes; by default a new pyplot figure, which notebooks display inline.

    Returns:
        The Axes drawn into.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
    score = "" if prediction.score is None else f" {prediction.score:.3f}"
    ax.set_title(f"{Path(prediction.source).name}: {prediction.label}{score}")
    runners = "\n".join(f"{name} {p:.3f}" for name, p in prediction.top(4)[1:])
    if runners:
        ax.text(
            0.01,
            0.01,
            runners,
            transform=ax.transAxes,
            color="white",
            fontsize=8,
            va="bottom",
            bbox={"facecolor": "black", "alpha": 0.5, "pad": 2},
        )
    ax.set_axis_off()
    return ax
