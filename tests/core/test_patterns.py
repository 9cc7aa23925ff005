"""core.patterns: the coarse patterns of the precursor (an exact enumeration of the grid's
levels), its images, the limit on the pattern space, and the seeded multiscale random starts."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import BadInput
from core.patterns import (
    check_pattern_space,
    coarse_patterns,
    pattern_digits,
    pattern_index,
    precursor_images,
    random_multiscale_images,
)


def test_pattern_enumeration_is_a_bijection_with_exact_levels():
    levels = (0.2, 0.5, 0.8)
    indices = np.arange(3**9)
    digits = pattern_digits(indices, 3, 3)
    assert digits.shape == (3**9, 3, 3)
    assert len({d.tobytes() for d in digits}) == 3**9  # every combination exactly once
    np.testing.assert_array_equal(pattern_index(digits, 3), indices)
    coarse = coarse_patterns(indices, 3, levels)
    assert set(np.unique(coarse)) == {np.float32(v) for v in levels}
    # index 1 sets only the first cell to the second level
    np.testing.assert_array_equal(coarse[1], np.array([[0.5, 0.2, 0.2], [0.2, 0.2, 0.2], [0.2, 0.2, 0.2]], np.float32))


def test_precursor_images_are_standardized_28x28():
    images = precursor_images(np.array([1, 5000, 19681]), 3, (0.2, 0.5, 0.8))
    assert images.shape == (3, 28, 28) and images.dtype == np.float32
    np.testing.assert_allclose(images.mean(axis=(1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(images.std(axis=(1, 2)), 1, atol=1e-4)
    # a constant pattern has no structure: all zeros, not NaN
    assert np.all(precursor_images(np.array([0]), 3, (0.2, 0.5, 0.8)) == 0)


def test_absurd_pattern_spaces_are_refused():
    assert check_pattern_space(3, (0.2, 0.5, 0.8)) == 19683
    with pytest.raises(BadInput, match="patterns"):
        check_pattern_space(9, (0.2, 0.5, 0.8))


def test_multiscale_starts_are_seeded_and_standardized():
    a = random_multiscale_images(4, seed=(0, 5, 1))
    b = random_multiscale_images(4, seed=(0, 5, 1))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, random_multiscale_images(4, seed=(0, 5, 2)))
    np.testing.assert_allclose(a.std(axis=(1, 2)), 1, atol=1e-4)
