"""core.dream, deep dreams (algorithms.md §4): carving raises the map's activation, detail
re-injection is lossless, tiles leave no seams, a weighted objective is the weighted sum of
its terms, a dream does not depend on its batch. The job through Ray:
tests/end_to_end/test_dream_command.py; bad input: tests/cli/test_bad_input.py."""

from __future__ import annotations

import numpy as np
import pytest

from core.errors import BadInput


# ----- helpers and fixtures -------------------------------------------------------------------
@pytest.fixture(scope="module")
def conv3(trained_model):
    from core.ascent import Ascent

    model, _ = trained_model
    return Ascent(model, ["conv3"])


@pytest.fixture(scope="module")
def standardization(trained_model):
    from core.model import Standardization

    return Standardization(**trained_model[1]["standardization"])


def flower(standardization, height: int, width: int | None = None) -> np.ndarray:
    """The default photo in model units, float32 (1, height, width)."""
    from core.dream import resize, to_model_units
    from jobs.dream import load_image

    pixels, _ = load_image(None, height)
    if width is not None:
        pixels = resize(pixels[None], height, width)[0]
    return to_model_units(pixels, standardization)[None]


def alive_map(ascent, small: np.ndarray) -> int:
    """Map 56 if it responds to the 28×28 image (1, 28, 28), else the first map that does."""
    activations = ascent.losses(np.repeat(small, 128, axis=0), ascent.map_objective("conv3", np.arange(128)))
    return 56 if activations[56] > 0 else int(np.flatnonzero(activations > 0)[0])


def seam_ratios(change: np.ndarray, grid: int, band: int = 3) -> tuple[float, float]:
    """For a dream's change (H, W) on a grid×grid tiling: (gradient energy across the tile
    borders ÷ elsewhere, change energy within ``band`` px of the borders ÷ elsewhere).
    A seam is a jump (first ratio high) or an undreamt line (second ratio low)."""
    grad_on, grad_off, amp_on, amp_off = [], [], [], []
    for axis in (0, 1):
        size = change.shape[axis]
        borders = [round(k * size / grid) for k in range(1, grid)]
        gradient = np.moveaxis(np.diff(change, axis=axis) ** 2, axis, 0)  # row j: change[j+1] − change[j]
        across = np.zeros(size - 1, bool)
        across[[b - 1 for b in borders]] = True
        grad_on.append(gradient[across].mean())
        grad_off.append(gradient[~across].mean())
        energy = np.moveaxis(change**2, axis, 0)
        near = np.zeros(size, bool)
        for b in borders:
            near[b - band : b + band] = True
        amp_on.append(energy[near].mean())
        amp_off.append(energy[~near].mean())
    return float(np.mean(grad_on) / np.mean(grad_off)), float(np.mean(amp_on) / np.mean(amp_off))


# ----- the math ------------------------------------------------------------------------------
def test_one_carving_iteration_raises_the_maps_activation(conv3, standardization):
    from core.dream import carve, resize

    image = flower(standardization, 168)
    target = alive_map(conv3, resize(image, 28, 28))
    weights = conv3.map_objective("conv3", [target])
    before = conv3.losses(resize(image, 28, 28), weights)[0]
    result = carve(conv3, image, weights, iterations=1, epochs=20)
    after = conv3.losses(resize(result.dreams, 28, 28), weights)[0]
    assert result.dreams.shape == image.shape
    assert result.start_losses[0] == pytest.approx(before)
    assert before > 0 and after > 1.5 * before  # the 28×28 version of the dream excites the map more
    assert result.losses[0, 0] > before  # and so did the ascent's own 28×28 output


def test_zero_epochs_give_back_the_image(conv3, standardization):
    """Carving and the general dream (octaves, rolled tiles) re-inject exactly the detail the
    downscaling lost: without ascent steps the dream is the original image."""
    from core.dream import carve, deep_dream, resize, split_detail

    image = flower(standardization, 140, 168)
    small, detail = split_detail(image)
    np.testing.assert_allclose(resize(small, 140, 168) + detail, image, atol=1e-5)
    weights = conv3.map_objective("conv3", [56])
    carved = carve(conv3, image, weights, iterations=3, epochs=0)
    np.testing.assert_allclose(carved.dreams, image, atol=1e-4)
    dreamt = deep_dream(conv3, image, weights, octaves=3, octave_scale=1.4, tile_grid=2, iterations=2, epochs=0, seeds=[7])
    np.testing.assert_allclose(dreamt.dreams, image, atol=1e-4)
    assert np.abs(image).max() > 1  # the tolerance is small against the image's values


def test_tiled_dream_keeps_the_size_and_shows_no_seams(conv3, standardization):
    from core.dream import deep_dream

    image = flower(standardization, 224, 280)  # 4×4 tiles of 56×70 px
    weights = conv3.map_objective("conv3", [56])
    rolled = deep_dream(conv3, image, weights, tile_grid=4, iterations=4, epochs=20, seeds=[0])
    assert rolled.dreams.shape == image.shape and rolled.losses.shape == (4, 1)
    jump, coverage = seam_ratios(rolled.dreams[0] - image[0], 4)
    assert jump < 1.5 and coverage > 0.5, (jump, coverage)
    # The same measure sees the seams of a fixed grid (tile edges stay undreamt):
    fixed = deep_dream(conv3, image, weights, tile_grid=4, iterations=4, epochs=20, roll=False)
    assert seam_ratios(fixed.dreams[0] - image[0], 4)[1] < 0.3


def test_roll_is_undone_exactly():
    from core.dream import roll_each, roll_shifts

    rng = np.random.default_rng(1)
    images = rng.normal(size=(3, 50, 70)).astype(np.float32)
    shifts = np.stack([roll_shifts(np.random.default_rng(i), 4, 5, 50, 70)[0] for i in range(3)])
    np.testing.assert_array_equal(roll_each(roll_each(images, shifts), -shifts), images)
    steps = roll_shifts(np.random.default_rng(0), 4, 5, 50, 70)  # 4 steps, tiles of 10×14 px
    assert len({int(s) % 10 // 3 for s in steps[:, 0]}) >= 3  # stratified: borders spread over the tile


def test_weighted_objective_is_the_weighted_sum_of_its_terms(trained_model, standardization):
    from core.ascent import Ascent
    from core.dream import Term, objective_weights, resize

    ascent = Ascent(trained_model[0], ["conv2", "conv3"])
    small = resize(flower(standardization, 56), 28, 28)
    terms = (Term("conv3", 56, 1.0), Term("conv3", 12, 0.5), Term("conv2", None, 0.2))
    mixed = ascent.losses(small, objective_weights(ascent, [terms]))[0]
    parts = [ascent.losses(small, objective_weights(ascent, [(Term(t.layer, t.map, 1.0),)]))[0] for t in terms]
    assert mixed == pytest.approx(1.0 * parts[0] + 0.5 * parts[1] + 0.2 * parts[2], rel=1e-5)
    whole_layer = objective_weights(ascent, [(Term("conv2", None, 0.2),)])
    np.testing.assert_allclose(whole_layer[0], np.full((1, 64), 0.2 / 64, np.float32))
    with pytest.raises(BadInput, match="zero weights"):
        objective_weights(ascent, [(Term("conv3", 1, 0.0),)])
    with pytest.raises(BadInput, match="out of range"):
        objective_weights(ascent, [(Term("conv3", 128, 1.0),)])


def test_a_dream_does_not_depend_on_its_batch(conv3, standardization):
    from core.dream import deep_dream

    image = flower(standardization, 112)
    maps = [3, 56]
    batch = deep_dream(conv3, np.repeat(image, 2, axis=0), conv3.map_objective("conv3", maps), tile_grid=2,
                       iterations=2, epochs=10, seeds=[(0, m) for m in maps])
    alone = deep_dream(conv3, image, conv3.map_objective("conv3", [56]), tile_grid=2, iterations=2, epochs=10,
                       seeds=[(0, 56)])
    np.testing.assert_allclose(batch.dreams[1], alone.dreams[0], atol=1e-3)
