"""Figures of the jobs as PNG bytes (matplotlib, no display needed): OIP grids, dream panels
and contact sheets, the KMeans sweep's elbow and silhouette, MLP curves and the clusters
experiment's comparison. The run store writes them next to the Parquet results."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def value_width_adjusted(image: np.ndarray, width: float) -> np.ndarray:
    """(x − mean) / std · width + 0.5, clipped to [0, 1]: ±0.5/width standard deviations
    span black to white (width 0.1 is algorithms.md §2's contrast enhancement)."""
    std = image.std()
    return np.clip((image - image.mean()) / (std if std > 0 else 1.0) * width + 0.5, 0.0, 1.0)


def png(figure) -> bytes:
    """The figure as PNG bytes; the figure is closed."""
    buffer = io.BytesIO()
    try:
        figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(figure)
    return buffer.getvalue()


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str], cmap: str = "viridis",
               columns: int = 16, suptitle: str | None = None) -> bytes:
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
    return png(figure)


@dataclass(frozen=True)
class Panel:
    """One image of a figure: a 2-D array of any size, its title, colour map and value range
    (None: the image's own min / max)."""

    image: np.ndarray
    title: str
    cmap: str = "gray"
    vmin: float | None = None
    vmax: float | None = None


def image_sheet(panels: Sequence[Panel], columns: int = 16, inches: float = 1.3,
                suptitle: str | None = None, title_size: int = 6) -> bytes:
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
    return png(figure)


def pixels_png(pixels: np.ndarray) -> bytes:
    """uint8 pixels (H, W) or (H, W, 3) as a PNG of exactly H×W."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def gray_png(pixels: np.ndarray) -> bytes:
    """Gray pixels (H, W) in [0, 1] (clipped) as an 8-bit PNG of exactly H×W."""
    return pixels_png(np.round(np.clip(np.asarray(pixels, np.float64), 0.0, 1.0) * 255).astype(np.uint8))


# ----- KMeans sweep and MLP runs -------------------------------------------------------------
def elbow_plot(frame, title: str) -> bytes:
    """Inertia vs K (look for the elbow) and fit seconds vs K, side by side."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    left.plot(frame["k"], frame["inertia"], "o-")
    left.set_xlabel("number of clusters K")
    left.set_ylabel("inertia (sum of squared distances)")
    left.set_title("elbow: inertia vs K")
    right.plot(frame["k"], frame["fit_seconds"], "o-", label="wall clock")
    right.plot(frame["k"], frame["fit_cpu_seconds"], "s--", label="process CPU")
    right.set_xlabel("number of clusters K")
    right.set_ylabel("fit seconds")
    right.set_title("fit time vs K")
    right.legend()
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    return png(figure)


def silhouette_plot(frame, title: str) -> bytes:
    """Mean silhouette coefficient vs K, error bars = std over the samples."""
    figure, axis = plt.subplots(figsize=(7, 4.2))
    measured = frame[frame["silhouette_repeats"] > 0]
    if len(measured):
        axis.errorbar(measured["k"], measured["silhouette_mean"], yerr=measured["silhouette_std"], fmt="o-", capsize=3)
        first = measured.iloc[0]
        how = (f"exact, all {int(first['silhouette_sample']):,} points" if first["silhouette_exact"] else
               f"mean ± std of {int(first['silhouette_repeats'])} samples of {int(first['silhouette_sample']):,} points")
    else:
        how = "not computed (--silhouette none)"
        axis.text(0.5, 0.5, how, ha="center", va="center", transform=axis.transAxes)
    axis.set_xlabel("number of clusters K")
    axis.set_ylabel("mean silhouette coefficient")
    axis.set_title(f"silhouette vs K ({how})", fontsize=9)
    axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    return png(figure)


def training_curves(frame, title: str) -> bytes:
    """Loss (with its L2 share), train/test accuracy, and CPU seconds per weight layer, vs epoch."""
    frame = frame.sort_values("epoch")
    figure, (cost, accuracy, cpu) = plt.subplots(1, 3, figsize=(17, 4.5), layout="constrained")
    cost.plot(frame["epoch"], frame["loss"], label="loss (mean batch objective)")
    cost.set_yscale("log")
    cost.set_xlabel("epoch")
    cost.set_ylabel("loss")
    share = cost.twinx()
    share.plot(frame["epoch"], frame["l2_share"], color="tab:red", alpha=0.6, label="L2 share")
    share.set_ylabel("L2 share of the loss", color="tab:red")
    cost.set_title("cost")
    evaluated = frame.dropna(subset=["train_acc"])
    accuracy.plot(evaluated["epoch"], evaluated["train_acc"], label="train", color="tab:orange")
    accuracy.plot(evaluated["epoch"], evaluated["test_acc"], label="test", color="tab:blue")
    if len(evaluated):
        best = evaluated.loc[evaluated["test_acc"].idxmax()]
        accuracy.axhline(best["test_acc"], ls=":", color="gray", label=f"best test {best['test_acc']:.4f}")
        low = min(evaluated["test_acc"].quantile(0.1), evaluated["train_acc"].quantile(0.1))
        accuracy.set_ylim(max(0.0, low - 0.01), 1.0)
    accuracy.set_xlabel("epoch")
    accuracy.set_ylabel("accuracy")
    accuracy.set_title("accuracy")
    accuracy.legend(loc="lower right")
    layers = sorted(int(c.rsplit("_", 1)[1]) for c in frame.columns if c.startswith("backward_cpu_s_"))
    for l in layers:
        cpu.plot(frame["epoch"], frame[f"backward_cpu_s_{l}"], label=f"backward, weights L{l}→L{l + 1}")
        cpu.plot(frame["epoch"], frame[f"forward_cpu_s_{l}"], ls="--", label=f"forward, weights L{l}→L{l + 1}")
    cpu.set_yscale("log")
    cpu.set_xlabel("epoch")
    cpu.set_ylabel("CPU seconds per epoch")
    cpu.set_title("CPU time per layer")
    cpu.legend(fontsize=7)
    for axis in (cost, accuracy, cpu):
        axis.grid(alpha=0.3)
    figure.suptitle(title, fontsize=9)
    return png(figure)


def comparison_plot(epochs, comparison, title: str, reference: str) -> bytes:
    """Test accuracy vs epoch and vs CPU seconds for every configuration (targets dotted),
    and the CPU speedup to reach each target relative to the configuration ``reference``."""
    figure, (by_epoch, by_cpu, speed) = plt.subplots(1, 3, figsize=(17, 4.6), layout="constrained")
    targets = sorted(comparison["target"].unique())
    names = [reference] + sorted(n for n in epochs["config"].unique() if n != reference)
    top = max(targets)
    for name in names:
        run = epochs[epochs["config"] == name].sort_values("epoch")
        label = "reference (784 pixels)" if name == reference else f"K = {int(run['k'].iloc[0])}"
        evaluated = run.dropna(subset=["test_acc"])
        cpu = run["cpu_seconds"].cumsum()[evaluated.index]
        by_epoch.plot(evaluated["epoch"], evaluated["test_acc"], label=label, lw=1)
        by_cpu.plot(cpu, evaluated["test_acc"], label=label, lw=1)
        if len(evaluated):
            top = max(top, float(evaluated["test_acc"].max()))
    for axis in (by_epoch, by_cpu):
        for target in targets:
            axis.axhline(target, ls=":", color="gray", lw=0.8)
        axis.set_ylim(max(0.0, min(targets) - 0.03), min(1.0, top + 0.005))
        axis.set_ylabel("test accuracy")
        axis.grid(alpha=0.3)
    by_epoch.legend(fontsize=8, loc="lower right")
    by_cpu.legend(fontsize=8, loc="upper left")
    by_epoch.set_xlabel("epoch")
    by_epoch.set_title("test accuracy vs epoch (targets dotted)")
    by_cpu.set_xscale("log")
    by_cpu.set_xlabel("cumulative training CPU seconds")
    by_cpu.set_title("test accuracy vs CPU time")
    clustered = [n for n in names if n != reference]
    width = 0.8 / max(1, len(targets))
    for i, target in enumerate(targets):
        rows = comparison[comparison["target"] == target].set_index("config")
        values = [rows.loc[n, "speedup_cpu_first"] if n in rows.index else math.nan for n in clustered]
        positions = np.arange(len(clustered)) + (i - (len(targets) - 1) / 2) * width
        speed.bar(positions, np.nan_to_num(values, nan=0.0), width, label=f"test acc ≥ {target:.4f}")
        for x, value in zip(positions, values):
            if math.isnan(value):
                speed.text(x, 0.02, "never", rotation=90, ha="center", va="bottom", fontsize=7)
    speed.axhline(1.0, color="black", lw=0.8)
    speed.set_xticks(np.arange(len(clustered)))
    speed.set_xticklabels([f"K = {int(n[1:])}" for n in clustered])
    speed.set_ylabel("CPU speedup vs reference (first reach)")
    speed.set_title("CPU time to reach the target, reference ÷ clustered\n(0 = never reached)", fontsize=9)
    speed.legend(fontsize=8)
    speed.grid(alpha=0.3, axis="y")
    figure.suptitle(title, fontsize=9)
    return png(figure)
