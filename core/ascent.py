"""Batched gradient ascent on input pixels (algorithms.md §2).

N images, each with its own objective: a weighted sum, over chosen layers, of the spatial
mean of each map's post-ReLU activation. An OIP run is the special case of one weight 1.0
on one (layer, map) per image. The loss of the batch is the sum of the per-image losses,
so one backward pass gives every image its own gradient; the gradient is normalized per
image by its RMS before the step ``x ← x + η·g / (rms(g) + 1e-8)``. Weights never change.

Images run in fixed-size chunks (a power of two up to ``chunk_size`` rows) through one
compiled ``tf.function`` per chunk shape; the last chunk is padded with zero-weight images,
so a shape is traced once and never again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from core.errors import BadInput
from core.model import IMAGE_SIZE

LEARNING_RATE = 0.05  # η, in units of the standardized pixel values
RMS_EPSILON = 1e-8
CHUNK_SIZE = 256


@dataclass(frozen=True)
class AscentResult:
    """images: float32 (N, 28, 28) after the last step; losses: float32 (N,) of those images;
    history: float32 (len(record_epochs), N), the loss after e steps for each recorded e."""

    images: np.ndarray
    losses: np.ndarray
    history: np.ndarray
    record_epochs: tuple[int, ...]


def _needed_extent(layers: Sequence[keras.layers.Layer], output_size: int) -> int | None:
    """Input size (from the top-left) that the last of ``layers`` actually reads to produce
    ``output_size`` rows: valid convolutions and poolings drop trailing rows that a floor
    division leaves over. None when a layer is of a kind this does not know."""
    size = output_size
    for layer in reversed(layers):
        config = layer.get_config()
        if isinstance(layer, keras.layers.Conv2D) and config["padding"] == "valid" and config["dilation_rate"] == (1, 1):
            (kernel, _), (stride, _) = config["kernel_size"], config["strides"]
        elif isinstance(layer, keras.layers.MaxPooling2D) and config["padding"] == "valid":
            (kernel, _), (stride, _) = config["pool_size"], config["strides"]
        else:
            return None
        size = (size - 1) * stride + kernel
    return size


def _feature_model(model: keras.Model, layer_names: Sequence[str]) -> tuple[keras.Model, int]:
    """A model from the input to the named layers' outputs, and the input extent it reads.

    For conv3 of the dreamctl CNN only the top-left 26×26 pixels reach the layer (the 2×2
    poolings drop the last row and column), so the model runs on that crop: the same
    activations for about 17 % less work. Any other architecture keeps the full input.
    """
    image_size = int(model.input_shape[1])
    deepest = max(model.layers.index(model.get_layer(name)) for name in layer_names)
    chain = model.layers[: deepest + 1]
    extents = [_needed_extent(chain[: chain.index(model.get_layer(name)) + 1],
                              int(model.get_layer(name).output.shape[1])) for name in layer_names]
    if None in extents or not all(isinstance(layer, (keras.layers.Conv2D, keras.layers.MaxPooling2D)) for layer in chain):
        return keras.Model(model.inputs, [model.get_layer(name).output for name in layer_names]), image_size
    extent = min(image_size, max(extents))
    inputs = keras.Input((extent, extent, int(model.input_shape[-1])))
    outputs, x = {}, inputs
    for layer in chain:
        x = layer(x)
        outputs[layer.name] = x
    return keras.Model(inputs, [outputs[name] for name in layer_names]), extent


class Ascent:
    """Gradient ascent on a trained CNN towards per-image objectives over ``layers``.

    ``layers``: names of the conv layers the objectives may use, e.g. ("conv3",).
    """

    def __init__(self, model: keras.Model, layers: Sequence[str], chunk_size: int = CHUNK_SIZE):
        layer_names = [layer.name for layer in model.layers]
        unknown = [name for name in layers if name not in layer_names]
        if unknown:
            raise BadInput(f"unknown layer {unknown[0]!r}; the model has {', '.join(layer_names)}")
        self.layers = tuple(layers)
        self.chunk_size = int(chunk_size)
        self._features, self.input_extent = _feature_model(model, self.layers)
        self.n_maps = tuple(int(output.shape[-1]) for output in self._features.outputs)
        self._compiled: dict[int, tuple] = {}  # chunk rows -> (ascend, losses) tf.functions

    def _functions(self, n_rows: int) -> tuple:
        """Compiled (ascend, losses) for a chunk shape: the smallest power of two ≥ n_rows,
        capped at ``chunk_size``; each shape is traced once."""
        rows = min(self.chunk_size, 1 << max(0, int(n_rows) - 1).bit_length())
        if rows not in self._compiled:
            image_spec = tf.TensorSpec([rows, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32)
            weight_specs = tuple(tf.TensorSpec([rows, n], tf.float32) for n in self.n_maps)
            scalar_specs = [tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32)]
            self._compiled[rows] = (
                tf.function(self._ascend_graph, input_signature=[image_spec, weight_specs, *scalar_specs]),
                tf.function(self._losses_graph, input_signature=[image_spec, weight_specs]),
            )
        return rows, *self._compiled[rows]

    # ----- objectives -------------------------------------------------------------------
    def map_objective(self, layer: str, map_ids: np.ndarray) -> list[np.ndarray]:
        """Weights selecting one map per image: 1.0 on (layer, map_ids[i]) for image i."""
        if layer not in self.layers:
            raise BadInput(f"layer {layer!r} is not among this ascent's layers {self.layers}")
        map_ids = np.asarray(map_ids, dtype=np.int64)
        layer_index = self.layers.index(layer)
        n_maps = self.n_maps[layer_index]
        if map_ids.size and (map_ids.min() < 0 or map_ids.max() >= n_maps):
            bad = int(map_ids[(map_ids < 0) | (map_ids >= n_maps)][0])
            raise BadInput(f"map {bad} is out of range: {layer} has maps 0-{n_maps - 1}")
        weights = [np.zeros((len(map_ids), n), np.float32) for n in self.n_maps]
        weights[layer_index][np.arange(len(map_ids)), map_ids] = 1.0
        return weights

    # ----- compiled graphs --------------------------------------------------------------
    def _losses_graph(self, images, weights):
        extent = self.input_extent  # pixels beyond it never reach the layers: their gradient is 0
        features = self._features(images[:, :extent, :extent, :], training=False)
        if len(self.layers) == 1:
            features = [features]
        per_layer = [
            tf.reduce_sum(tf.reduce_mean(activation, axis=[1, 2]) * weight, axis=1)
            for activation, weight in zip(features, weights)
        ]
        return tf.add_n(per_layer)  # (chunk,)

    def _ascend_graph(self, images, weights, epochs, learning_rate):
        history = tf.TensorArray(tf.float32, size=epochs + 1, element_shape=images.shape[:1])

        def step(epoch, images, history):
            with tf.GradientTape() as tape:
                tape.watch(images)
                losses = self._losses_graph(images, weights)
                total = tf.reduce_sum(losses)
            gradients = tape.gradient(total, images)
            rms = tf.sqrt(tf.reduce_mean(tf.square(gradients), axis=[1, 2, 3], keepdims=True))
            images = images + learning_rate * gradients / (rms + RMS_EPSILON)
            return epoch + 1, images, history.write(epoch, losses)

        _, images, history = tf.while_loop(
            lambda epoch, *_: epoch < epochs, step, (tf.constant(0), images, history)
        )
        final_losses = self._losses_graph(images, weights)
        return images, final_losses, history.write(epochs, final_losses).stack()

    # ----- public API -------------------------------------------------------------------
    def _chunks(self, images: np.ndarray, weights: Sequence[np.ndarray], want: int):
        """Yield (start, stop, compiled function ``want`` (0 ascend, 1 losses), padded images
        (rows, 28, 28, 1), padded weights); the last chunk is padded with zero weights."""
        n_images = len(images)
        rows, *functions = self._functions(n_images)
        for start in range(0, n_images, rows):
            stop = min(start + rows, n_images)
            pad = rows - (stop - start)
            chunk_images = np.pad(images[start:stop], ((0, pad), (0, 0), (0, 0)))[..., None]
            chunk_weights = tuple(tf.constant(np.pad(w[start:stop], ((0, pad), (0, 0)))) for w in weights)
            yield start, stop, functions[want], tf.constant(chunk_images, tf.float32), chunk_weights

    def _check(self, images: np.ndarray, weights: Sequence[np.ndarray]) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise BadInput(f"images must have shape (N, 28, 28), got {images.shape}")
        if len(weights) != len(self.layers) or any(
            np.shape(w) != (len(images), n) for w, n in zip(weights, self.n_maps)
        ):
            raise BadInput("need one weight array (N, maps of the layer) per layer")
        return images

    def losses(self, images: np.ndarray, weights: Sequence[np.ndarray]) -> np.ndarray:
        """Objective values of images (N, 28, 28) without any step; float32 (N,)."""
        images = self._check(images, weights)
        out = np.empty(len(images), np.float32)
        for start, stop, compute, chunk_images, chunk_weights in self._chunks(images, weights, 1):
            out[start:stop] = compute(chunk_images, chunk_weights).numpy()[: stop - start]
        return out

    def run(
        self,
        images: np.ndarray,
        weights: Sequence[np.ndarray],
        epochs: int,
        learning_rate: float = LEARNING_RATE,
        record_epochs: Sequence[int] | None = None,
        skip_frozen: bool = True,
    ) -> AscentResult:
        """Run ``epochs`` ascent steps on images (N, 28, 28) with per-image weights.

        weights: one float32 array (N, maps) per layer of this ascent.
        record_epochs: the step counts e (0..epochs) whose losses go into ``history``
        (default: only ``epochs``).
        skip_frozen: images whose objective is exactly 0 with non-negative weights have a
        zero gradient (every weighted ReLU output is 0), so they never move; they are not
        computed and keep loss 0. This gives the same result, much faster on dead maps.
        """
        images = self._check(images, weights)
        if epochs < 0:
            raise BadInput(f"epochs must be >= 0, got {epochs}")
        record = tuple(sorted(set(record_epochs))) if record_epochs is not None else (epochs,)
        if record and (record[0] < 0 or record[-1] > epochs):
            raise BadInput(f"record_epochs must lie in 0..{epochs}")
        out_images = images.copy()
        out_losses = np.zeros(len(images), np.float32)
        history = np.zeros((len(record), len(images)), np.float32)
        active = np.arange(len(images))
        if skip_frozen:
            non_negative = np.all([np.all(w >= 0, axis=1) for w in weights], axis=0)
            active = np.flatnonzero(~non_negative | (self.losses(images, weights) != 0.0))
        active_weights = [w[active] for w in weights]
        for start, stop, ascend, chunk_images, chunk_weights in self._chunks(images[active], active_weights, 0):
            final, losses, loss_history = ascend(
                chunk_images, chunk_weights, tf.constant(epochs, tf.int32), tf.constant(learning_rate, tf.float32)
            )
            rows = active[start:stop]
            n_rows = stop - start
            out_images[rows] = final.numpy()[:n_rows, :, :, 0]
            out_losses[rows] = losses.numpy()[:n_rows]
            history[:, rows] = loss_history.numpy()[list(record), :n_rows]
        return AscentResult(out_images, out_losses, history, record)

    def run_maps(
        self,
        images: np.ndarray,
        layer: str,
        map_ids: np.ndarray,
        epochs: int,
        learning_rate: float = LEARNING_RATE,
        record_epochs: Sequence[int] | None = None,
    ) -> AscentResult:
        """OIP ascent: image i maximizes the mean activation of map ``map_ids[i]`` of ``layer``."""
        weights = self.map_objective(layer, map_ids)
        return self.run(images, weights, epochs, learning_rate, record_epochs)
