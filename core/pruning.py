"""Adaptive pruning of the precursor's phase 1 (issue 22): drop a start only when it can no
longer climb to the shard's top.

Phase 1 runs every start of a shard (by default all of one map's coarse patterns) for
``epochs`` ascent steps and keeps the ``top`` best. Most starts are hopeless long before the
end, but how early one can tell differs from map to map: on some maps the winners lead from
the start, on others (map 39 of the digits model) they start low and overtake thousands of
starts. So each shard learns from its own starts how fast a start can still climb:

1. **Finished starts.** ``sample`` live starts drawn at random (seeded by the shard) and the
   ``leaders`` with the highest initial loss run to the end first. The ``top``-th best of
   their final losses is the **bar**: the shard's ``top`` best all end at or above it.
2. **How fast a start can climb.** A step moves an image by the same distance (the gradient
   is normalized), so the loss rises by at most a map-dependent *rate* per step, which a
   start approaches as it wakes up. From the finished starts' histories: the highest rate at
   each step t (``max_rates[t-1]``, the loss gained from step t−1 to t) and the largest rise
   of a rate from one step to the next (``max_speedup``).
3. **The bound.** A start at step s ≥ 1 with loss L_s and last rate d_s = L_s − L_{s−1}
   gains at step t > s at most ``min(max_rates[t-1] · c_s, d_s + (t − s) · max_speedup)``.
   ``c_s`` calibrates the sample on the whole shard: the highest rate at step s among *all*
   the starts still running (known exactly, they all just ran it) over the finished starts'
   highest, when larger. At step 0 (no rate yet) only the first term counts, uncalibrated.
   Both terms are widened by ``margin`` per step still to run, ``1 + margin · (epochs − s +
   1)``: what a sample misses (a rarer, faster climber) matters more the longer the way. A
   start whose bound (L_s plus those gains) falls below the bar is dropped at step s; the
   others run one more step, and the test repeats at every step from 0 to epochs − 1.

Nothing is guaranteed in the mathematical sense (the rates are learned from a sample, and a
start that wakes up late can outrun it), but every quantity is measured on the shard itself,
so maps whose starts settle early are cut hard and maps with late winners keep what they
need. A shard's outcome depends only on its own starts (and the seed its caller derives
from them): shards stay independent and resumable. The survivors' losses are the
exhaustive run's, bit for bit (the step is memoryless). Measured in docs/PERFORMANCE.md,
"Adaptive pruning".

Pure numpy; ``core.ascent.Ascent.run_adaptive`` runs it on the CNN, the benchmarks replay
it on recorded losses (:func:`replay`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.errors import BadParameter


@dataclass(frozen=True)
class ClimbBound:
    """What a shard's finished starts say about how far its other starts can still climb.

    bar: the ``top``-th best final loss among the finished starts (-inf with fewer than
    ``top``: nothing is dropped); max_rates: float (epochs,), the highest loss gained at step
    t = 1..epochs; max_speedup: the largest rise of a start's per-step gain from one step to
    the next (inf with fewer than 2 epochs); margin: relative widening per step still to run.
    """

    bar: float
    max_rates: np.ndarray
    max_speedup: float
    margin: float

    @classmethod
    def learn(cls, history: np.ndarray, top: int, margin: float) -> ClimbBound:
        """From the loss histories (epochs + 1, n) of starts that ran to the end."""
        history = np.asarray(history, np.float64)
        epochs = history.shape[0] - 1
        rates = np.diff(history, axis=0)  # (epochs, n)
        bar = float(np.sort(history[-1])[-top]) if history.shape[1] >= top else -np.inf
        max_rates = rates.max(axis=1) if rates.shape[1] else np.zeros(epochs)
        speedup = float(max(np.diff(rates, axis=0).max(), 0.0)) if epochs >= 2 and rates.shape[1] else np.inf
        return cls(bar, max_rates, speedup, float(margin))

    def widening(self, step: int) -> float:
        """The factor on both limits at ``step``: 1 + margin × (steps still to run + 1)."""
        return 1.0 + self.margin * (len(self.max_rates) - step + 1)

    def slack(self, step: int, losses: np.ndarray, previous: np.ndarray | None = None,
              running_rate: float | None = None) -> np.ndarray:
        """float (n,): how far above the bar the bound of each start at ``step`` (0 ≤ step <
        epochs) with loss ``losses`` lies, in units of the loss; +inf where nothing can be
        measured (no bar, or the sample did not climb at the step before). From step 1 on:
        ``previous``, their losses at step − 1, and ``running_rate``, the highest ``losses -
        previous`` over every start of the shard still running at this step, finished ones
        included."""
        epochs = len(self.max_rates)
        if not 0 <= step < epochs:
            raise ValueError(f"a cut needs 0 <= step < {epochs}, got {step}")
        losses = np.asarray(losses, np.float64)
        widen = self.widening(step)
        if not np.isfinite(self.bar):
            return np.full(len(losses), np.inf)  # nothing to measure against: keep everything
        if step == 0:
            return losses + self.max_rates.sum() * widen - self.bar
        if self.max_rates[step - 1] <= 0:
            return np.full(len(losses), np.inf)  # the sample did not climb here: no scale to calibrate
        calibration = max(1.0, running_rate / self.max_rates[step - 1]) * widen
        ahead = np.arange(1, epochs - step + 1)  # t - step for t = step + 1 .. epochs
        ceiling = self.max_rates[step:] * calibration  # (epochs - step,)
        rates = (losses - np.asarray(previous, np.float64))[:, None] + ahead[None, :] * self.max_speedup * widen
        return losses + np.minimum(ceiling[None, :], rates).sum(axis=1) - self.bar

    def keep(self, step: int, losses: np.ndarray, previous: np.ndarray | None = None,
             running_rate: float | None = None) -> np.ndarray:
        """bool (n,): the starts whose :meth:`slack` is ≥ 0, those that can still reach the bar."""
        return self.slack(step, losses, previous, running_rate) >= 0


def check_adaptive(sample: int, leaders: int, margin: float) -> None:
    """Raise BadParameter unless sample ≥ 1, leaders ≥ 0 and margin ≥ 0 (finite)."""
    if int(sample) < 1:
        raise BadParameter("sample", f"must be >= 1, got {sample}")
    if int(leaders) < 0:
        raise BadParameter("leaders", f"must be >= 0, got {leaders}")
    if not np.isfinite(margin) or margin < 0:
        raise BadParameter("margin", f"must be a finite number >= 0, got {margin}")


def first_finishers(live: np.ndarray, sample: int, rng: np.random.Generator) -> np.ndarray:
    """The ``sample`` starts (indices, sorted) drawn at random from ``live`` to run to the end."""
    return np.sort(rng.choice(live, size=min(sample, len(live)), replace=False))


def leaders(candidates: np.ndarray, losses: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` candidates (indices, sorted) with the highest ``losses[candidates]``,
    ties to the lower index."""
    order = candidates[np.lexsort((candidates, -losses[candidates]))]
    return np.sort(order[:count])


def replay(history: np.ndarray, top: int, sample: int, leaders_count: int, margin: float,
           rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """The adaptive rule on one shard's recorded losses (epochs + 1, n) of an exhaustive run:
    (the step each start reaches, image-steps). The same decisions as
    :meth:`core.ascent.Ascent.run_adaptive` with the same ``rng``: its survivors' losses are
    the exhaustive ones."""
    epochs, n = history.shape[0] - 1, history.shape[1]
    live = np.flatnonzero(history[0] != 0)
    reached = np.full(n, epochs, np.int32)
    if len(live) <= sample + leaders_count + top or epochs < 1:
        return reached, len(live) * epochs
    first = first_finishers(live, sample, rng)
    rest = np.setdiff1d(live, first)
    ahead = leaders(rest, history[0], leaders_count)
    finished = np.union1d(first, ahead)
    bound = ClimbBound.learn(history[:, finished], top, margin)
    active = np.setdiff1d(rest, ahead)
    image_steps = len(finished) * epochs
    for step in range(epochs):
        if step == 0:
            kept = bound.keep(0, history[0, active])
        else:
            running = np.concatenate([active, finished])
            rate = float(np.max(history[step, running] - history[step - 1, running]))
            kept = bound.keep(step, history[step, active], history[step - 1, active], rate)
        reached[active[~kept]] = step
        active = active[kept]
        image_steps += len(active)
    return reached, image_steps
