"""Figures written next to the Parquet results (matplotlib, no display needed)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def contrast_enhanced(image: np.ndarray) -> np.ndarray:
    """(x − mean) / std · 0.1 + 0.5, clipped to [0, 1] (algorithms.md §2)."""
    std = image.std()
    return np.clip((image - image.mean()) / (std if std > 0 else 1.0) * 0.1 + 0.5, 0.0, 1.0)


def value_width_adjusted(image: np.ndarray, width: float) -> np.ndarray:
    """(x − mean) / std · width + 0.5, clipped to [0, 1]: ±0.5/width standard deviations
    span black to white (``contrast_enhanced`` is width 0.1)."""
    std = image.std()
    return np.clip((image - image.mean()) / (std if std > 0 else 1.0) * width + 0.5, 0.0, 1.0)


def save_figure(figure, path: Path) -> Path:
    """Save atomically as PNG and close the figure."""
    temporary = path.with_name(f".{path.name}.tmp.png")
    figure.savefig(temporary, dpi=100, bbox_inches="tight")
    plt.close(figure)
    os.replace(temporary, path)
    return path


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], path: Path, cmap: str = "viridis",
               columns: int = 16, suptitle: str | None = None) -> Path:
    """A grid of 28×28 images (each with its own colour scale) with a small title each."""
    n_images = len(images)
    columns = max(1, min(columns, n_images))
    rows = max(1, math.ceil(n_images / columns))
    figure, axes = plt.subplots(rows, columns, figsize=(1.3 * columns, 1.45 * rows + 0.4), squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index < n_images:
            axis.imshow(np.asarray(images[index]).reshape(28, 28), cmap=cmap)
            axis.set_title(titles[index], fontsize=6)
    if suptitle:
        figure.suptitle(suptitle, fontsize=9)
    return save_figure(figure, path)


@dataclass(frozen=True)
class Panel:
    """One image of a figure: a 2-D array of any size, its title, colour map and value range
    (None: the image's own min / max)."""

    image: np.ndarray
    title: str
    cmap: str = "gray"
    vmin: float | None = None
    vmax: float | None = None


def image_sheet(panels: Sequence[Panel], path: Path, columns: int = 16, inches: float = 1.3,
                suptitle: str | None = None, title_size: int = 6) -> Path:
    """A grid of images of any size (a row of panels, a contact sheet), ``inches`` wide each."""
    n_panels = len(panels)
    columns = max(1, min(columns, n_panels))
    rows = max(1, math.ceil(n_panels / columns))
    aspect = max(np.shape(panel.image)[0] / np.shape(panel.image)[1] for panel in panels) if panels else 1.0
    image_height, title_height = inches * aspect, 0.04 + title_size / 40  # inches
    top_margin = 0.35 if suptitle else 0.05  # inches above the first row's titles
    height = rows * (image_height + title_height) + top_margin
    figure, axes = plt.subplots(rows, columns, figsize=(inches * columns, height), squeeze=False)
    figure.subplots_adjust(left=0.01 / columns, right=1 - 0.01 / columns, bottom=0.01,
                           top=1 - (top_margin + title_height) / height,
                           wspace=0.05, hspace=title_height / image_height)  # fixed layout: fast for large sheets
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index < n_panels:
            panel = panels[index]
            axis.imshow(np.asarray(panel.image), cmap=panel.cmap, vmin=panel.vmin, vmax=panel.vmax)
            axis.set_title(panel.title, fontsize=title_size)
    if suptitle:
        figure.suptitle(suptitle, fontsize=9, y=1 - 0.08 / height, va="top")
    return save_figure(figure, path)


def save_gray_png(pixels: np.ndarray, path: Path) -> Path:
    """Gray pixels (H, W) in [0, 1] (clipped) as an 8-bit PNG of exactly H×W, written atomically."""
    from PIL import Image

    values = np.round(np.clip(np.asarray(pixels, np.float64), 0.0, 1.0) * 255).astype(np.uint8)
    temporary = path.with_name(f".{path.name}.tmp.png")
    Image.fromarray(values).save(temporary)  # uint8 (H, W): mode "L"
    os.replace(temporary, path)
    return path
