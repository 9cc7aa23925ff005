"""core.experiment: the time to reach a test accuracy (first and stable epoch, CPU and wall
seconds), the best accuracy and the automatic targets, on hand-made metrics."""

from __future__ import annotations

import math

from core.experiment import auto_targets, best_accuracy, time_to_accuracy


def test_time_to_accuracy_on_a_hand_made_run():
    #            epoch:  1    2       3    4     5    6
    accuracy = [0.50, math.nan, 0.80, 0.75, 0.90, 0.95]  # epoch 2 not evaluated
    cpu = [1.0, 2.0, 1.0, 1.0, 1.0, 1.0]  # cumulative: 1 3 4 5 6 7
    wall = [2.0] * 6
    low, mid, high, never = time_to_accuracy(accuracy, cpu, wall, [0.8, 0.9, 0.95, 0.99])
    assert (low.epoch_first, low.cpu_seconds_first, low.wall_seconds_first) == (3, 4.0, 6.0)
    assert (low.epoch_stable, low.cpu_seconds_stable) == (5, 6.0)  # it dipped to 0.75 at epoch 4
    assert (mid.epoch_first, mid.epoch_stable, mid.cpu_seconds_first) == (5, 5, 6.0)
    assert (high.epoch_first, high.epoch_stable, high.cpu_seconds_first) == (6, 6, 7.0)
    assert never.epoch_first is None and never.epoch_stable is None and math.isnan(never.cpu_seconds_first)
    # reached early but lost at the end: a first epoch, no stable one
    (lost,) = time_to_accuracy([0.9, 0.7], [1, 1], [1, 1], [0.85])
    assert lost.epoch_first == 1 and lost.epoch_stable is None
    assert best_accuracy(accuracy) == (0.95, 6)
    assert auto_targets(accuracy) == (0.945, 0.95)
    assert auto_targets(accuracy, [0.96, 0.97]) == (0.945, 0.95, 0.965, 0.97)  # + the best other run's level
