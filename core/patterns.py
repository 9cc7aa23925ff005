"""Initial images for the ascent: 4-scale random starts and the precursor's coarse patterns.

All images here are float32 (N, 28, 28), standardized per image (mean 0, std 1), the
input space of the CNN. A constant image (std 0) becomes all zeros.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from core.errors import BadInput, BadParameter
from core.model import IMAGE_SIZE

SCALE_GRIDS = (28, 14, 7, 4)  # cells per side of the 4 random length scales
SCALE_AMPLITUDES = (1.0, 1.0, 1.0, 1.0)
MAX_PATTERNS = 20_000_000  # refuse pattern spaces larger than this


def standardize_per_image(images: np.ndarray) -> np.ndarray:
    """(N, H, W) -> float32 (N, H, W) with mean 0 and std 1 per image.

    An image that is constant up to float round-off (std ≤ 1e-6) becomes all zeros, instead
    of its round-off noise blown up to unit variance."""
    images = np.asarray(images, dtype=np.float64)
    mean = images.mean(axis=(1, 2), keepdims=True)
    std = images.std(axis=(1, 2), keepdims=True)
    centered = images - mean
    return np.divide(centered, std, out=np.zeros_like(centered), where=std > 1e-6).astype(np.float32)


def upscale_bicubic(images: np.ndarray, size: int = IMAGE_SIZE) -> np.ndarray:
    """Bicubic resize (N, h, w) -> float32 (N, size, size) (TF, half-pixel centers)."""
    import tensorflow as tf  # here, not at the top: job specs import this module for --help

    resized = tf.image.resize(np.asarray(images, np.float32)[..., None], (size, size), method="bicubic")
    return resized.numpy()[..., 0]


def random_multiscale_images(
    n_images: int,
    seed: int | Sequence[int],
    grids: Sequence[int] = SCALE_GRIDS,
    amplitudes: Sequence[float] = SCALE_AMPLITUDES,
) -> np.ndarray:
    """Random starts with fluctuations on several length scales (algorithms.md §2).

    For each grid size g: uniform noise (N, g, g) in [0, 1), bicubically upscaled to 28×28,
    times its amplitude; the sum is standardized per image. ``seed``: an int or a sequence
    of ints (e.g. (seed, map, restart)) for numpy's generator. Returns float32 (N, 28, 28).
    """
    if len(grids) != len(amplitudes):
        raise BadInput("need one amplitude per length scale")
    rng = np.random.default_rng(seed)
    total = np.zeros((n_images, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    for grid, amplitude in zip(grids, amplitudes):
        noise = rng.uniform(0.0, 1.0, size=(n_images, grid, grid)).astype(np.float32)
        total += amplitude * (noise if grid == IMAGE_SIZE else upscale_bicubic(noise))
    return standardize_per_image(total)


def pattern_count(grid: int, n_levels: int) -> int:
    """Number of coarse patterns: n_levels ** (grid * grid)."""
    return n_levels ** (grid * grid)


def check_pattern_space(grid: int, levels: Sequence[float]) -> int:
    """Validate a precursor pattern space; return its size or raise BadInput."""
    if grid < 1 or grid > IMAGE_SIZE:
        raise BadParameter("grid", f"must be between 1 and {IMAGE_SIZE}, got {grid}")
    if len(levels) < 2:
        raise BadParameter("levels", "needs at least 2 values")
    if len(set(levels)) != len(levels):
        raise BadParameter("levels", "must be distinct")
    count = pattern_count(grid, len(levels))
    if count > MAX_PATTERNS:
        raise BadParameter(
            "grid", f"{len(levels)} levels on a {grid}x{grid} grid give {len(levels)}^{grid * grid} patterns "
            f"(limit {MAX_PATTERNS:,}); use a smaller grid or fewer levels"
        )
    return count


def pattern_digits(indices: np.ndarray, grid: int, n_levels: int) -> np.ndarray:
    """Combination indices (N,) -> level indices (N, grid, grid).

    Mixed radix, row-major: cell (r, c) is digit r*grid + c, digit 0 the least significant.
    """
    indices = np.asarray(indices, dtype=np.int64)
    powers = n_levels ** np.arange(grid * grid, dtype=np.int64)
    digits = (indices[:, None] // powers[None, :]) % n_levels
    return digits.reshape(-1, grid, grid)


def pattern_index(digits: np.ndarray, n_levels: int) -> np.ndarray:
    """Inverse of :func:`pattern_digits`: level indices (N, g, g) -> combination indices (N,)."""
    flat = np.asarray(digits, dtype=np.int64).reshape(len(digits), -1)
    powers = n_levels ** np.arange(flat.shape[1], dtype=np.int64)
    return flat @ powers


def coarse_patterns(indices: np.ndarray, grid: int, levels: Sequence[float]) -> np.ndarray:
    """Combination indices (N,) -> the coarse grids of pixel levels, float32 (N, grid, grid)."""
    return np.asarray(levels, np.float32)[pattern_digits(indices, grid, len(levels))]


def precursor_images(indices: np.ndarray, grid: int, levels: Sequence[float]) -> np.ndarray:
    """The precursor's start images: coarse patterns upscaled bicubically to 28×28 and
    standardized per image. Returns float32 (N, 28, 28)."""
    return standardize_per_image(upscale_bicubic(coarse_patterns(indices, grid, levels)))
