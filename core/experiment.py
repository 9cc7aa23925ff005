"""How fast a training run reaches given accuracies (algorithms.md §6, the seed's comparison).

Pure functions over one run's per-epoch metrics: ``accuracy`` (n_epochs,) with nan for
epochs that were not evaluated, ``cpu_seconds`` and ``wall_seconds`` (n_epochs,) spent in
each epoch. "Reach" times are cumulative up to and including the epoch that reached.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

AUTO_OFFSETS = (0.005, 0.0)  # auto targets: a run's best test accuracy minus these


@dataclass(frozen=True)
class Reach:
    """When a run first reached ``target`` and when it reached it for good.

    epoch_first: first (1-based) epoch whose accuracy is >= target; None if never.
    epoch_stable: first evaluated epoch from which every later evaluated accuracy stays
        >= target (the seed's "stable" accuracy); None if the last evaluation is below.
    cpu_seconds_* / wall_seconds_*: cumulative seconds up to that epoch (nan if None).
    """

    target: float
    epoch_first: int | None
    cpu_seconds_first: float
    wall_seconds_first: float
    epoch_stable: int | None
    cpu_seconds_stable: float
    wall_seconds_stable: float


def time_to_accuracy(accuracy: ArrayLike, cpu_seconds: ArrayLike, wall_seconds: ArrayLike,
                     targets: ArrayLike) -> list[Reach]:
    """One :class:`Reach` per target, in the order given."""
    accuracy = np.asarray(accuracy, dtype=np.float64)
    cpu = np.cumsum(np.asarray(cpu_seconds, dtype=np.float64))
    wall = np.cumsum(np.asarray(wall_seconds, dtype=np.float64))
    if not accuracy.shape == cpu.shape == wall.shape or accuracy.ndim != 1:
        raise ValueError("accuracy, cpu_seconds and wall_seconds must be 1-D arrays of one length")
    evaluated = np.flatnonzero(~np.isnan(accuracy))
    reaches = []
    for target in np.asarray(targets, dtype=np.float64).reshape(-1):
        above = accuracy[evaluated] >= target
        first = int(evaluated[np.argmax(above)]) if above.any() else None
        stable = None
        if above.size and above[-1]:
            below = np.flatnonzero(~above)
            stable = int(evaluated[below[-1] + 1]) if below.size else int(evaluated[0])
        reaches.append(Reach(
            target=float(target),
            epoch_first=None if first is None else first + 1,
            cpu_seconds_first=math.nan if first is None else float(cpu[first]),
            wall_seconds_first=math.nan if first is None else float(wall[first]),
            epoch_stable=None if stable is None else stable + 1,
            cpu_seconds_stable=math.nan if stable is None else float(cpu[stable]),
            wall_seconds_stable=math.nan if stable is None else float(wall[stable]),
        ))
    return reaches


def best_accuracy(accuracy: ArrayLike) -> tuple[float, int | None]:
    """(highest evaluated accuracy, its first 1-based epoch); (nan, None) if none evaluated."""
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if np.isnan(accuracy).all():
        return math.nan, None
    index = int(np.nanargmax(accuracy))
    return float(accuracy[index]), index + 1


def auto_targets(reference_accuracy: ArrayLike, other_best: Sequence[float] = (),
                 offsets: Sequence[float] = AUTO_OFFSETS) -> tuple[float, ...]:
    """The seed's kind of targets: the reference's level and the best other run's level.

    Each of the reference's best test accuracy and the highest of ``other_best`` (the other
    runs' best accuracies), minus each offset (default 0.5 and 0 points), rounded down to 4
    decimals (so the run it came from reaches it); ascending, without duplicates.
    """
    best, _ = best_accuracy(reference_accuracy)
    if math.isnan(best):
        raise ValueError("the reference run has no evaluated accuracy")
    levels = [best] + ([max(other_best)] if len(other_best) and not math.isnan(max(other_best)) else [])
    return tuple(sorted({math.floor((level - offset) * 1e4 + 1e-6) / 1e4 for level in levels for offset in offsets}))


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, nan when either is nan or the denominator is 0."""
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator
