"""Figures written next to the Parquet results (matplotlib, no display needed)."""

from __future__ import annotations

import math
import os
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
