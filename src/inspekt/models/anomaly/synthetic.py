"""Synthetic anomalies for training on normal images only (DRAEM, Zavrtanik et al. 2021).

A sample is a normal image with a foreign texture blended in under a random mask:
``aug = (1 - m) * img + (1 - beta) * tex * m + beta * img * m``. Masks are thresholded Perlin noise
(blobs), sometimes thinned to strokes along a level set of fractal noise (scratches, pen lines);
textures are procedural (fractal noise, flat ink-like tones, stripes) or another training image,
shifted, flipped and re-lit, which mimics misplaced features such as an extra pip. No texture
dataset is needed. Everything is NumPy, seeded by the caller's generator, and works on a bank of
Perlin fields computed once, so a batch costs well under a millisecond per image at 128 px.
"""

from __future__ import annotations

import numpy as np

TEXTURE_KINDS = ("image", "fractal", "flat", "stripes")
STROKE_FRACTION = 0.3  # masks drawn as thin strokes rather than blobs


def perlin_noise(size: int, cells: int, rng: np.random.Generator) -> np.ndarray:
    """One octave of 2-D Perlin gradient noise.

    Args:
        size: side of the square output in pixels; a multiple of ``cells``.
        cells: lattice cells per side (the noise's spatial frequency).
        rng: random generator for the lattice gradients.

    Returns:
        (size, size) float32 noise, roughly in [-0.7, 0.7].
    """
    angles = rng.uniform(0, 2 * np.pi, (cells + 1, cells + 1))
    gradients = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    position = (np.arange(size) + 0.5) * cells / size
    cell = position.astype(int)
    frac = position - cell
    fy, fx = np.meshgrid(frac, frac, indexing="ij")
    cy, cx = np.meshgrid(cell, cell, indexing="ij")

    def corner(dy: int, dx: int) -> np.ndarray:
        g = gradients[cy + dy, cx + dx]
        return g[..., 0] * (fy - dy) + g[..., 1] * (fx - dx)

    # the quintic fade makes the noise smooth across cell borders
    wy, wx = (t * t * t * (t * (6 * t - 15) + 10) for t in (fy, fx))
    top = corner(0, 0) * (1 - wx) + corner(0, 1) * wx
    bottom = corner(1, 0) * (1 - wx) + corner(1, 1) * wx
    return (top * (1 - wy) + bottom * wy).astype(np.float32)


def fractal_noise(size: int, cells: int, octaves: int, rng: np.random.Generator) -> np.ndarray:
    """Sum of Perlin octaves, each twice the frequency and half the amplitude of the previous one,
    rescaled to [0, 1] (frequencies above ``size / 2`` are skipped)."""
    total = np.zeros((size, size), np.float32)
    for octave in range(octaves):
        frequency = cells * 2**octave
        if frequency > size // 2:
            break
        total += perlin_noise(size, frequency, rng) / 2**octave
    low, high = total.min(), total.max()
    return (total - low) / max(high - low, 1e-6)


class SyntheticAnomalies:
    """Seeded generator of (augmented image, mask) pairs over a set of normal images.

    Args:
        images: (N, H, W, C) uint8 normal images, H = W; the source of "image" textures.
        rng: random generator; every draw comes from it, so a run is reproducible.
        anomaly_ratio: fraction of samples that get an anomaly (the rest stay normal, empty mask).
        bank_size: Perlin fields precomputed for masks and textures; each use applies a random flip,
            rotation by a multiple of 90 degrees and circular shift, so few fields give much variety.
    """

    def __init__(self, images: np.ndarray, rng: np.random.Generator, anomaly_ratio: float = 0.5, bank_size: int = 96):
        self.images = images
        self.rng = rng
        self.anomaly_ratio = anomaly_ratio
        size = images.shape[1]
        # lattice sizes 1..32 cells per side: from image-wide smudges to specks a few pixels wide
        scales = [2**k for k in range(6) if 2**k <= size // 2]
        self.mask_bank = np.stack([perlin_noise(size, int(rng.choice(scales)), rng) for _ in range(bank_size)])
        self.mask_bank /= np.abs(self.mask_bank).max(axis=(1, 2), keepdims=True) + 1e-6
        self.texture_bank = np.stack(
            [fractal_noise(size, int(rng.choice(scales[:4])), 4, rng) for _ in range(bank_size)]
        )

    def _transform(self, field: np.ndarray) -> np.ndarray:
        """A random dihedral transform and circular shift of a square (H, W[, C]) field."""
        field = np.rot90(field, int(self.rng.integers(4)))
        if self.rng.random() < 0.5:
            field = field[::-1]
        shift = self.rng.integers(field.shape[0], size=2)
        return np.roll(field, tuple(int(s) for s in shift), axis=(0, 1))

    def _field(self) -> np.ndarray:
        """A randomly transformed Perlin field from the bank, in [-1, 1]."""
        return self._transform(self.mask_bank[self.rng.integers(len(self.mask_bank))])

    def mask(self) -> np.ndarray:
        """A binary (H, W) float32 mask, never empty: a blob, or (``STROKE_FRACTION`` of the time)
        thin strokes inside a blob, a level set of a fractal field, like a scratch or a pen line."""
        for _ in range(8):
            field = self._field()
            mask = field > self.rng.uniform(0.3, 0.7)
            if self.rng.random() < STROKE_FRACTION:
                strokes = self._transform(self.texture_bank[self.rng.integers(len(self.texture_bank))])
                mask &= np.abs(strokes - 0.5) < self.rng.uniform(0.01, 0.04)
            if mask.any():
                return mask.astype(np.float32)
        return (field >= field.max()).astype(np.float32)

    def texture(self, channels: int) -> np.ndarray:
        """A random (H, W, C) float32 texture in [0, 1] of one of the ``TEXTURE_KINDS``."""
        kind = TEXTURE_KINDS[self.rng.integers(len(TEXTURE_KINDS))]
        size = self.images.shape[1]
        if kind == "image":
            source = self.images[self.rng.integers(len(self.images))].astype(np.float32) / 255
            contrast, brightness = self.rng.uniform(0.6, 1.4), self.rng.uniform(-0.3, 0.3)
            return np.clip(self._transform(source) * contrast + brightness, 0, 1)
        tone = self.rng.uniform(0, 1, channels).astype(np.float32)
        if kind == "flat":
            return np.broadcast_to(tone, (size, size, channels))
        if kind == "fractal":
            pattern = self._transform(self.texture_bank[self.rng.integers(len(self.texture_bank))])
        else:
            period, angle = self.rng.uniform(3, size / 4), self.rng.uniform(0, np.pi)
            yy, xx = np.mgrid[:size, :size]
            phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
            pattern = (0.5 + 0.5 * np.sin(phase)).astype(np.float32)
        # pattern modulates around a random tone: dark scribbles and bright glare alike
        amplitude = self.rng.uniform(0.1, 1.0)
        return np.clip(tone + amplitude * (pattern[..., None] - 0.5), 0, 1)

    def sample(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Augment one image.

        Args:
            image: (H, W, C) float32 normal image in [0, 1].

        Returns:
            The augmented (H, W, C) float32 image and its (H, W) float32 mask (all zeros when the
            sample was left normal).
        """
        size = image.shape[0]
        if self.rng.random() >= self.anomaly_ratio:
            return image, np.zeros((size, size), np.float32)
        mask = self.mask()
        texture = self.texture(image.shape[2])
        beta = self.rng.uniform(0.0, 0.8)
        m = mask[..., None]
        augmented = (1 - m) * image + (1 - beta) * texture * m + beta * image * m
        return augmented.astype(np.float32), mask

    def batch(self, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Augment a (B, H, W, C) batch -> augmented (B, H, W, C) and masks (B, H, W), float32."""
        pairs = [self.sample(image) for image in images]
        return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])
