"""Per-map statistics for the map atlas: what the test set does to each map, and what the
whole CNN reads in an image.

Images are standardized model inputs, float32 (N, 28, 28); activations are the spatial mean
of a map's post-ReLU output (the OIP loss of algorithms.md §2, same units).
"""

from __future__ import annotations

from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # keras loads TensorFlow; the job spec that imports this module must not
    import keras

BATCH_SIZE = 512  # test images per forward pass
TOP_IMAGES = 9


@dataclass(frozen=True)
class StrongestImages:
    """Per map of a layer: the strongest mean activation over the images and the images
    that drive it hardest.

    data_max: float32 (maps,); indices: int64 (maps, k), strongest first (ties: lower
    index first); activations: float32 (maps, k), the mean activation of those images.
    """

    data_max: np.ndarray
    indices: np.ndarray
    activations: np.ndarray


@dataclass(frozen=True)
class Reading:
    """What the full CNN reads in N images: digit int64 (N,), its softmax probability
    float32 (N,), the entropy of the softmax in nats float32 (N,) (0 = certain, ln 10 ≈ 2.30
    = uniform)."""

    digit: np.ndarray
    probability: np.ndarray
    entropy: np.ndarray


def map_activations(model: keras.Model, layer: str, images: np.ndarray, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """Mean post-ReLU activation of every map of ``layer`` for every image: float32
    (N, maps), all maps in one forward pass per batch."""
    import keras

    features = keras.Model(model.inputs, model.get_layer(layer).output)
    images = np.asarray(images, np.float32)
    rows = []
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size, ..., None]
        rows.append(np.asarray(features([batch], training=False)).mean(axis=(1, 2)))  # [x]: the model's input structure
    n_maps = int(features.output.shape[-1])
    return np.concatenate(rows).astype(np.float32) if rows else np.zeros((0, n_maps), np.float32)


def strongest_images(activations: np.ndarray, k: int = TOP_IMAGES) -> StrongestImages:
    """From activations (N, maps): per map its maximum over the N images and the ``k``
    images with the highest activation (k is capped at N)."""
    activations = np.asarray(activations, np.float32)
    k = min(k, len(activations))
    # stable sort on the negated values: equal activations keep the lower image index first
    order = np.argsort(-activations.T, axis=1, kind="stable")[:, :k]  # (maps, k)
    top = np.take_along_axis(activations.T, order, axis=1)
    data_max = activations.max(axis=0) if len(activations) else np.zeros(activations.shape[1], np.float32)
    return StrongestImages(data_max.astype(np.float32), order.astype(np.int64), top.astype(np.float32))


def read_images(model: keras.Model, images: np.ndarray, batch_size: int = BATCH_SIZE) -> Reading:
    """Argmax digit, its probability and the softmax entropy (nats) of images (N, 28, 28)."""
    images = np.asarray(images, np.float32)
    batches = [np.asarray(model(images[start : start + batch_size, ..., None], training=False))
               for start in range(0, len(images), batch_size)]
    probabilities = np.concatenate(batches).astype(np.float64) if batches else np.zeros((0, 10))
    # p·log p → 0 as p → 0: clip only inside the log
    entropy = -(probabilities * np.log(np.clip(probabilities, 1e-30, 1.0))).sum(axis=1)
    digit = probabilities.argmax(axis=1)
    return Reading(digit.astype(np.int64), probabilities.max(axis=1, initial=0.0).astype(np.float32),
                   np.maximum(entropy, 0.0).astype(np.float32))


def ratio_to_data_max(losses: np.ndarray, data_max: np.ndarray) -> np.ndarray:
    """loss / data_max per map, float32; NaN where the test set never activates the map."""
    losses, data_max = np.asarray(losses, np.float64), np.asarray(data_max, np.float64)
    ratio = np.divide(losses, data_max, out=np.full(np.broadcast(losses, data_max).shape, np.nan), where=data_max > 0)
    return ratio.astype(np.float32)
