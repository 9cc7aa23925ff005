"""jobs.seed: the knee of a curve (the K the seed experiment reports as the elbow)."""

from __future__ import annotations

import numpy as np
import pytest

from jobs.seed import elbow


def test_the_knee_of_a_curve():
    ks = np.arange(10, 180, 10)
    assert elbow(ks, 1.0 / ks)[0] == 40 and elbow(ks, 1.0 / ks)[1] > 0.5  # a sharp L
    assert elbow(ks, -ks.astype(float))[1] == pytest.approx(0.0)  # a straight line: no elbow
