"""Deep dreams on the 28×28 MNIST CNN (algorithms.md §4): carving, octaves, tiles, weighted
objectives.

Units. "Pixels" are gray values in [0, 1] (0 black, 1 white). "Model units" are standardized
pixels, (pixels − mean) / std with the model's :class:`~core.model.Standardization`: the
CNN's input space. Every dream function takes and returns float32 batches (N, H, W) in model
units; convert with :func:`to_model_units` / :func:`to_pixels` at the edges.

Resizing. One resize everywhere: :func:`resize`, TensorFlow's bicubic with antialiasing
(half-pixel centers). Bicubic resizing is linear, so "image − blur" and "re-add the change"
commute with it.

Batching. A step makes ONE :meth:`core.ascent.Ascent.run` call for the whole batch (all
images × all their tiles); Python loops run over steps, never over images or tiles.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

if TYPE_CHECKING:
    from core.ascent import Ascent
from core.errors import BadInput, BadParameter
from core.model import IMAGE_SIZE, Standardization

OCTAVE_SCALE = 1.4  # size ratio of successive octaves [default]
# Step size η of dream ascents [default]. The OIP default 0.05 moves every 28×28 pixel by up
# to 8 standard units over 4 × 40 steps and buries the photo under the pattern; 0.01 leaves
# the flower visible under a ghostly pattern (docs/dreams.md).
DREAM_LEARNING_RATE = 0.01


# ----- units and resizing -----------------------------------------------------------------
def to_model_units(pixels: np.ndarray, standardization: Standardization) -> np.ndarray:
    """Pixels in [0, 1], any shape -> float32 model units (x − mean) / std."""
    return ((np.asarray(pixels, np.float32) - standardization.mean) / standardization.std).astype(np.float32)


def to_pixels(values: np.ndarray, standardization: Standardization) -> np.ndarray:
    """Model units -> float32 pixels (unclipped: a dream can leave [0, 1])."""
    return (np.asarray(values, np.float32) * standardization.std + standardization.mean).astype(np.float32)


def resize(images: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bicubic resize of gray images (N, h, w) -> float32 (N, height, width).

    Antialiased when shrinking (a 560 px photo becomes a fair 28×28 average, not a sample of
    a few pixels). The same size returns an exact copy.
    """
    import tensorflow as tf  # here, not at the top: job specs import this module for --help

    images = np.asarray(images, np.float32)
    if images.shape[1:] == (height, width):
        return images.copy()
    resized = tf.image.resize(images[..., None], (height, width), method="bicubic", antialias=True)
    return resized.numpy()[..., 0]


def split_detail(images: np.ndarray, size: int = IMAGE_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """(small, detail) of images (N, H, W): small = resize to size×size (N, size, size);
    detail = images − resize(small back to H×W) (N, H, W), the detail the small image lost."""
    _, height, width = np.shape(images)
    small = resize(images, size, size)
    return small, np.asarray(images, np.float32) - resize(small, height, width)


# ----- objectives -------------------------------------------------------------------------
@dataclass(frozen=True)
class Term:
    """One part of a dream's objective: ``weight`` × the mean activation of map ``map`` of
    ``layer``; ``map`` None = the whole layer (the weight spread equally over its maps)."""

    layer: str
    map: int | None
    weight: float

    def text(self) -> str:
        target = self.layer if self.map is None else f"{self.layer}:{self.map}"
        return f"{target}={self.weight:g}"


def objective_text(terms: Sequence[Term]) -> str:
    """Terms as the ``--objective`` syntax, e.g. 'conv3:56=1,conv2=0.2'."""
    return ",".join(term.text() for term in terms)


MAX_WEIGHT = 1e6  # |weight| of a term; larger ones overflow float32 activations × weights


def parse_objective(text: str, layers: dict[str, int]) -> tuple[Term, ...]:
    """'conv3:56=1.0,conv3:12=0.5,conv2=0.2' -> terms; ``layers``: layer name -> maps.

    Each comma-separated term is LAYER[:MAP][=WEIGHT]: no map = the whole layer (the weight
    spread equally over its maps), no weight = 1. A term may not repeat; not every weight may
    be 0; |weight| ≤ 1e6. Raises ValueError with a one-line reason.
    """
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or not all(parts):
        raise ValueError(f"cannot read {text!r} (use terms like 'conv3:56=1.0,conv3:12=0.5,conv2=0.2')")
    terms: list[Term] = []
    for part in parts:
        target, has_weight, weight_text = part.partition("=")
        layer, has_map, map_text = (piece.strip() for piece in target.partition(":"))
        try:
            weight = float(weight_text) if has_weight else 1.0
            map_id = int(map_text) if has_map else None
        except ValueError:
            raise ValueError(f"cannot read the term {part!r} (use LAYER[:MAP][=WEIGHT], e.g. conv3:56=1.0)") from None
        if not abs(weight) <= MAX_WEIGHT:  # also refuses nan and inf
            raise ValueError(f"the weight of {part!r} must be a number within ±{MAX_WEIGHT:g}")
        if layer not in layers:
            raise ValueError(f"unknown layer {layer!r} in {part!r}: choose one of {', '.join(layers)}")
        if map_id is not None and not 0 <= map_id < layers[layer]:
            raise ValueError(f"map {map_id} is out of range: {layer} has maps 0-{layers[layer] - 1}")
        if any((term.layer, term.map) == (layer, map_id) for term in terms):
            raise ValueError(f"{target.strip()} appears twice")
        terms.append(Term(layer, map_id, weight))
    if all(term.weight == 0 for term in terms):
        raise ValueError("all weights are 0; give at least one term a non-zero weight")
    return tuple(terms)


def objective_layers(objectives: Sequence[Sequence[Term]]) -> tuple[str, ...]:
    """The layers an ascent needs for these objectives, in a stable (sorted) order."""
    return tuple(sorted({term.layer for terms in objectives for term in terms}))


def objective_weights(ascent: Ascent, objectives: Sequence[Sequence[Term]]) -> list[np.ndarray]:
    """Per-layer weight arrays for :meth:`Ascent.run`, image i scored by ``objectives[i]``.

    Returns one float32 (N, maps of the layer) array per layer of ``ascent``. A whole-layer
    term puts weight / maps on each of the layer's maps, so its contribution is the weight
    times the mean activation over all maps. Raises BadInput for a layer the ascent does
    not have, a map out of range, a repeated term or an objective whose weights are all 0.
    """
    weights = [np.zeros((len(objectives), n_maps), np.float32) for n_maps in ascent.n_maps]
    for row, terms in enumerate(objectives):
        seen = set()
        for term in terms:
            if term.layer not in ascent.layers:
                raise BadInput(f"unknown layer {term.layer!r} in the objective; choose from {', '.join(ascent.layers)}")
            if (term.layer, term.map) in seen:
                raise BadInput(f"objective term {term.text()} is given twice")
            seen.add((term.layer, term.map))
            layer_index = ascent.layers.index(term.layer)
            n_maps = ascent.n_maps[layer_index]
            if term.map is None:
                weights[layer_index][row] += np.float32(term.weight / n_maps)
            elif 0 <= term.map < n_maps:
                weights[layer_index][row, term.map] += np.float32(term.weight)
            else:
                raise BadInput(f"map {term.map} is out of range: {term.layer} has maps 0-{n_maps - 1}")
        if not any(np.any(w[row] != 0) for w in weights):
            raise BadInput(f"objective {objective_text(terms)!r} has only zero weights")
    return weights


# ----- results ------------------------------------------------------------------------------
@dataclass(frozen=True)
class DreamResult:
    """What a dream gives back (model units throughout).

    dreams: float32 (N, H, W), the final images at the input's size.
    views: float32 (steps, N, 28, 28), what the CNN saw after each step: for carving the
        ascent's 28×28 output (the "OIP" stage); for octave/tile dreams the whole image
        downscaled to 28×28 after the step.
    losses: float32 (steps, N), the objective after each step's ascent (tiles: the mean
        over an image's tiles). Steps = iterations (× octaves).
    start_losses: float32 (N,), the objective of the original image's 28×28 version.
    """

    dreams: np.ndarray
    views: np.ndarray
    losses: np.ndarray
    start_losses: np.ndarray


# ----- part I: single-scale carving ---------------------------------------------------------
def carve(ascent: Ascent, images: np.ndarray, weights: Sequence[np.ndarray], iterations: int = 4,
          epochs: int = 40, learning_rate: float = DREAM_LEARNING_RATE) -> DreamResult:
    """The part-I dream (algorithms.md §4): carve patterns into the 28×28 version of images.

    images: float32 (N, H, W) in model units; weights: per-layer arrays (N, maps) as
    :meth:`Ascent.run` takes them. small = 28×28 version, detail = image − upscaled small;
    then ``iterations`` times: ``epochs`` ascent steps on small, upscale to H×W, add detail,
    downscale again. With 0 epochs (or 0 iterations) the dream is the input image.
    """
    images = np.asarray(images, np.float32)
    n_images, height, width = images.shape
    small, detail = split_detail(images)
    start_losses = ascent.losses(small, weights)
    dreams = images.copy()
    views, losses = [], []
    for _ in range(iterations):
        result = ascent.run(small, weights, epochs, learning_rate)  # one batched call: all N images
        views.append(result.images)
        losses.append(result.losses)
        dreams = resize(result.images, height, width) + detail
        small = resize(dreams, IMAGE_SIZE, IMAGE_SIZE)
    return DreamResult(dreams, _stack(views, (n_images, IMAGE_SIZE, IMAGE_SIZE)), _stack(losses, (n_images,)), start_losses)


# ----- the general dream: octaves and tiles -------------------------------------------------
def octave_sizes(height: int, width: int, octaves: int, scale: float = OCTAVE_SCALE) -> list[tuple[int, int]]:
    """(h, w) of every octave, smallest first, the last one (height, width): octave k from
    the top is the image shrunk by scale**k. Raises BadInput if the smallest is below 28 px."""
    if octaves < 1:
        raise BadParameter("octaves", f"must be at least 1, got {octaves}")
    if octaves > 1 and not scale > 1.0:
        raise BadParameter("octave_scale", f"must be > 1, got {scale:g}")
    sizes = [(round(height / scale**k), round(width / scale**k)) for k in reversed(range(octaves))]
    sizes[-1] = (height, width)
    if min(sizes[0]) < IMAGE_SIZE:
        raise BadParameter(
            "octaves", f"{octaves} octaves at scale {scale:g} shrink the {height}x{width} image to "
            f"{sizes[0][0]}x{sizes[0][1]} px, below the CNN's 28x28; use fewer octaves or a smaller scale"
        )
    return sizes


def octave_grid(tile_grid: int, octave_height: int, height: int) -> int:
    """Tiles per side at an octave: the tiles keep about the pixel size they have at full
    size (height / tile_grid), so small octaves get fewer (at least 1)."""
    return max(1, round(tile_grid * octave_height / height))


def check_tile_grid(tile_grid: int, height: int, width: int) -> None:
    """Each of the grid×grid tiles must hold at least 28×28 pixels (they are downscaled)."""
    largest = min(height, width) // IMAGE_SIZE
    if tile_grid < 1 or tile_grid > largest:
        raise BadParameter(
            "tile_grid", f"{tile_grid} does not fit a {height}x{width} image: tiles must be at least "
            f"28x28 px, so use 1-{max(largest, 1)}"
        )


def tiles_of(images: np.ndarray, grid: int) -> np.ndarray:
    """(N, 28·grid, 28·grid) -> (N·grid², 28, 28) tiles, image-major, row-major within."""
    n_images = len(images)
    tiles = images.reshape(n_images, grid, IMAGE_SIZE, grid, IMAGE_SIZE).transpose(0, 1, 3, 2, 4)
    return tiles.reshape(n_images * grid * grid, IMAGE_SIZE, IMAGE_SIZE)


def untile(tiles: np.ndarray, grid: int) -> np.ndarray:
    """Inverse of :func:`tiles_of`: (N·grid², 28, 28) -> (N, 28·grid, 28·grid)."""
    n_images = len(tiles) // (grid * grid)
    images = tiles.reshape(n_images, grid, grid, IMAGE_SIZE, IMAGE_SIZE).transpose(0, 1, 3, 2, 4)
    return images.reshape(n_images, grid * IMAGE_SIZE, grid * IMAGE_SIZE)


def roll_each(images: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Roll image i (N, H, W) by shifts[i] = (rows, columns), with wrap-around. Exact: a
    roll by −shifts undoes it bit for bit."""
    return np.stack([np.roll(image, tuple(shift), axis=(0, 1)) for image, shift in zip(images, shifts)])


def roll_shifts(rng: np.random.Generator, steps: int, grid: int, height: int, width: int) -> np.ndarray:
    """Random rolls (steps, 2) in pixels (rows, columns) for one image's steps at one octave.

    Stratified: along each axis the offsets of the steps within a tile are (p_t + u) / steps
    of a tile, p a random permutation of the steps and u uniform in [0, 1), plus a random
    whole number of tiles. So the tile borders of a few steps spread evenly over the tile
    instead of clumping, and every position lies near a border in at most one step.
    """
    shifts = np.empty((steps, 2), np.int64)
    for axis, size in enumerate((height, width)):
        tile = size / grid
        within = (rng.permutation(steps) + rng.uniform()) / steps * tile
        shifts[:, axis] = np.round(within + tile * rng.integers(grid, size=steps)).astype(np.int64) % size
    return shifts


def tiled_step(ascent: Ascent, images: np.ndarray, weights: Sequence[np.ndarray], grid: int, shifts: np.ndarray,
               epochs: int, learning_rate: float = DREAM_LEARNING_RATE) -> tuple[np.ndarray, np.ndarray]:
    """One dream step on a grid×grid tiling of each image (N, H, W), model units.

    Roll image i by shifts[i] (N, 2) so that the tile borders fall elsewhere at every step;
    bring the rolled image to (28·grid)² px, i.e. every one of its grid×grid tiles
    downscaled to 28×28 (interpolated from its true neighbours at the tile edges); run
    ``epochs`` ascent steps on all N·grid² tiles in one batch, each tile scored with its
    image's weights; upscale the change of the tiles to H×W, roll the CHANGE back by
    −shifts[i] and add it. The image itself is never rolled, so no jitter accumulates.
    Returns (new images (N, H, W), losses (N,) = mean tile objective after the ascent).
    """
    n_images, height, width = images.shape
    side = grid * IMAGE_SIZE
    small = resize(roll_each(images, shifts), side, side)  # (N, 28g, 28g)
    tiles = tiles_of(small, grid)  # (N·g², 28, 28)
    tile_weights = [np.repeat(np.asarray(w, np.float32), grid * grid, axis=0) for w in weights]
    result = ascent.run(tiles, tile_weights, epochs, learning_rate)
    change = resize(untile(result.images - tiles, grid), height, width)  # (N, H, W), rolled frame
    images = images + roll_each(change, -np.asarray(shifts))
    return images, result.losses.reshape(n_images, grid * grid).mean(axis=1)


def deep_dream(ascent: Ascent, images: np.ndarray, weights: Sequence[np.ndarray], *, octaves: int = 1,
               octave_scale: float = OCTAVE_SCALE, tile_grid: int = 1, iterations: int = 4, epochs: int = 40,
               learning_rate: float = DREAM_LEARNING_RATE, seeds: Sequence | None = None, roll: bool = True) -> DreamResult:
    """The general dream (algorithms.md §4, Google's octaves, tiles with a random roll).

    images: float32 (N, H, W), model units; weights: per-layer (N, maps) arrays.
    Octaves: the image at ``octaves`` sizes, each ``octave_scale`` times the one before,
    smallest first; at each octave run ``iterations`` tiled steps of ``epochs`` ascent
    steps, then upscale to the next size and re-add the detail that size lost
    (original at the next size − upscaled original at this size).
    Tiles: ``tile_grid``×``tile_grid`` at full size (fewer at small octaves, see
    :func:`octave_grid`); before every step the tile grid is rolled by a random offset
    (:func:`roll_shifts`) from image i's own generator ``np.random.default_rng(seeds[i])``
    (default: i), so an image's dream does not depend on its batch. ``roll=False`` keeps
    the grid fixed: the tile borders then show as undreamt lines (seams).
    With 0 epochs the result is the input image (to float round-off).
    """
    images = np.asarray(images, np.float32)
    n_images, height, width = images.shape
    sizes = octave_sizes(height, width, octaves, octave_scale)
    check_tile_grid(tile_grid, height, width)
    generators = [np.random.default_rng(seed) for seed in (seeds if seeds is not None else range(n_images))]
    originals = [resize(images, h, w) for h, w in sizes]  # the image at every octave size
    start_losses = ascent.losses(resize(images, IMAGE_SIZE, IMAGE_SIZE), weights)
    current = originals[0]
    views, losses = [], []
    for octave, (h, w) in enumerate(sizes):
        if octave:
            lost_detail = originals[octave] - resize(originals[octave - 1], h, w)
            current = resize(current, h, w) + lost_detail
        grid = octave_grid(tile_grid, h, height)
        if roll and grid > 1:
            shifts = np.stack([roll_shifts(rng, iterations, grid, h, w) for rng in generators], axis=1)
        else:
            shifts = np.zeros((iterations, n_images, 2), np.int64)
        for step in range(iterations):
            current, step_losses = tiled_step(ascent, current, weights, grid, shifts[step], epochs, learning_rate)
            views.append(resize(current, IMAGE_SIZE, IMAGE_SIZE))
            losses.append(step_losses)
    return DreamResult(current, _stack(views, (n_images, IMAGE_SIZE, IMAGE_SIZE)), _stack(losses, (n_images,)), start_losses)


def _stack(arrays: list[np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """np.stack that gives (0, *shape) for an empty list."""
    return np.stack(arrays).astype(np.float32) if arrays else np.zeros((0, *shape), np.float32)
