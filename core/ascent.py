"""Batched gradient ascent on input pixels (algorithms.md §2).

N images, each with its own objective: a weighted sum, over chosen layers, of the spatial
mean of each map's post-ReLU activation. An OIP run is the special case of one weight 1.0
on one (layer, map) per image. The loss of the batch is the sum of the per-image losses,
so one backward pass gives every image its own gradient; the gradient is normalized per
image by its RMS before the step ``x ← x + η·g / (rms(g) + 1e-8)``. Weights never change.
The step is memoryless: running e₁ steps and then e₂ more from the images reached is the
same computation as running e₁ + e₂ steps (bit for bit on CPU, whatever the batch).

Images run in fixed-size chunks (a power of two up to ``chunk_size`` rows) through one
compiled ``tf.function`` per chunk shape; the last chunk is padded with zero-weight images,
so a shape is traced once and never again.

Three options on top of the plain ascent:

- **Warm-up** (issue 13): for its first W steps image i follows the gradient of a surrogate
  of its objective, then the post-ReLU objective. ``"pre_relu"``: the spatial mean of the
  pre-activation (convolution + bias, before the ReLU) of the objective's layers;
  ``"leaky_relu"``: the post-ReLU objective with the objective layers' ReLU gradient
  replaced by a leaky one (slope ``LEAKY_SLOPE`` below 0). A map that is off at every
  position (post-ReLU 0, zero gradient: a "dead" start) gets a direction from either.
  Losses and histories always report the post-ReLU objective. W = 0 is the plain ascent.
- **Single-map slicing**: when every image targets the same map of the ascent's one layer,
  that layer computes only this map (its kernel and bias sliced to one output channel).
- **Successive halving** (issue 12, :meth:`Ascent.run_pruned`): all starts run a few steps,
  only the best continue; the survivors end exactly as an uninterrupted run would.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property, partial
from typing import NamedTuple, Sequence

from core.defaults import (
    ADAPTIVE_LEADERS,
    ADAPTIVE_LOOK_FIRST,
    ADAPTIVE_MARGIN,
    ADAPTIVE_SAMPLE,
    CHUNK_SIZE,
    LEARNING_RATE,
    PRUNE_SCHEDULE,
    WARMUP_KINDS,
    tensorflow_environment,
)

tensorflow_environment()  # before TensorFlow's first import: oneDNN's kernels on every x86 CPU

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from core.errors import BadInput, BadParameter
from core.model import IMAGE_SIZE
from core.pruning import ClimbBound, check_adaptive, first_finishers, leaders

RMS_EPSILON = 1e-8
LEAKY_SLOPE = 0.1  # gradient of the "leaky_relu" warm-up's ReLU below 0 (1 above)
NO_INLINE = {"_noinline": True}  # tf.function attribute: keep the function's own graph
# tf.function without autograph: no function here branches or loops in Python on a tensor's
# value, and autograph writes each function it converts to a file in $TMPDIR that only a
# normal exit removes; Ray's killed workers left ~15 per actor.
_graph_function = partial(tf.function, autograph=False)


def onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow runs oneDNN's kernels (decided when TensorFlow was
    imported, from the CPU and TF_ENABLE_ONEDNN_OPTS); None when this TensorFlow cannot say."""
    try:
        from tensorflow.python.util import _pywrap_util_port
    except ImportError:
        return None
    return bool(_pywrap_util_port.IsMklEnabled())


@dataclass(frozen=True)
class AscentResult:
    """images: float32 (N, 28, 28) after the last step; losses: float32 (N,) of those images;
    history: float32 (len(record_epochs), N), the loss after e steps for each recorded e."""

    images: np.ndarray
    losses: np.ndarray
    history: np.ndarray
    record_epochs: tuple[int, ...]


@dataclass(frozen=True)
class PrunedResult:
    """Outcome of :meth:`Ascent.run_pruned` for N starts.

    images: float32 (N, 28, 28), each start's image at the step it reached;
    losses: float32 (N,), its loss at that step;
    epochs_reached: int32 (N,), that step: ``epochs`` for the survivors of every cut and for
    frozen starts (loss exactly 0 at step 0: they never move, so 0 is their exact loss
    after ``epochs``), the step of the cut that dropped it otherwise;
    image_steps: ascent steps the starts took in all (an exhaustive run takes (live starts)
    × epochs): the measure of pruning's savings;
    discarded_steps: steps computed for starts that a cut then dropped, their image kept
    from before (adaptive pruning: the step past step 0 computes the loss the cut needs);
    loss_passes: forward passes through every layer computed for losses alone (every
    start's loss at step 0, unless kept features served, see ``Ascent._losses``; each
    start's loss at the step it stops; adaptive pruning: the losses of starts close to the
    bar, computed before their step). With the steps they are all the arithmetic.
    """

    images: np.ndarray
    losses: np.ndarray
    epochs_reached: np.ndarray
    image_steps: int
    discarded_steps: int
    loss_passes: int

    def ranking(self) -> np.ndarray:
        """Start indices, best first: the ones that reached the furthest step first, then
        by loss (descending), ties to the lower index. A start dropped at step 2 never
        outranks one that ran to the end, whatever their losses."""
        return np.lexsort((np.arange(len(self.losses)), -self.losses, -self.epochs_reached))


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


def _layer_chain(model: keras.Model, layer_names: Sequence[str]) -> tuple[list, int]:
    """The model's layers from the input to the deepest named one, and the input extent
    they read.

    For conv3 of the dreamctl CNN only the top-left 26×26 pixels reach the layer (the 2×2
    poolings drop the last row and column), so the chain runs on that crop: the same
    activations for about 17 % less work. Layers of other kinds keep the full input.
    """
    if not isinstance(model, keras.Sequential):
        raise BadInput(f"the ascent needs a keras.Sequential model, got {type(model).__name__}")
    image_size = int(model.input_shape[1])
    deepest = max(model.layers.index(model.get_layer(name)) for name in layer_names)
    chain = model.layers[: deepest + 1]
    extents = [_needed_extent(chain[: chain.index(model.get_layer(name)) + 1],
                              int(model.get_layer(name).output.shape[1])) for name in layer_names]
    extent = image_size if None in extents else min(image_size, max(extents))
    return chain, extent


def _conv_parts(layer: keras.layers.Conv2D, x, channel=None):
    """(pre-activation, activation) of a Conv2D, as its own ``call`` computes them; with
    ``channel`` (scalar int32 tensor) only that output channel: (rows, h, w, 1) each."""
    kernel, bias = layer.kernel, layer.bias
    if channel is not None:
        kernel = tf.gather(kernel, channel[None], axis=3)
        bias = None if bias is None else tf.gather(bias, channel[None])
    pre = layer.convolution_op(x, kernel)
    if bias is not None:
        pre = keras.ops.add(pre, keras.ops.reshape(bias, (1, 1, 1, -1)))
    post = layer.activation(pre) if layer.activation is not None else pre
    return pre, post


def _pools_before_relu(layer: keras.layers.Layer, following: keras.layers.Layer | None) -> bool:
    """A Conv2D with a ReLU feeding a MaxPooling2D: max-pool and ReLU commute exactly, so the
    pooling can run on the pre-activation and the ReLU on the 4× smaller pooled tensor. The
    gradient is the same to the bit (a window whose maximum is ≤ 0 passes no gradient either
    way; otherwise it reaches the first maximum either way), and the step skips a ReLU
    gradient over the full-size activation."""
    return (isinstance(layer, keras.layers.Conv2D) and layer.activation is keras.activations.relu
            and isinstance(following, keras.layers.MaxPooling2D) and following.get_config()["padding"] == "valid")


def _reads_pixels(layer: keras.layers.Layer, image_channels: int) -> bool:
    """The first Conv2D on single-channel images, stride 1, valid, no dilation: its gradient
    to the pixels can be one matrix product (:func:`_pixel_conv`)."""
    if not isinstance(layer, keras.layers.Conv2D) or image_channels != 1:
        return False
    config = layer.get_config()
    return config["padding"] == "valid" and tuple(config["strides"]) == (1, 1) and tuple(config["dilation_rate"]) == (1, 1)


def _pixel_conv(pixels, kernel, bias):
    """Pre-activation (rows, h - kh + 1, w - kw + 1, maps) of a valid, stride-1 convolution
    of single-channel images ``pixels`` (rows, h, w, 1), with its gradient to the pixels as
    one matrix product and kh·kw shifted sums.

    Same math as TensorFlow's gradient; oneDNN's kernel for it vectorizes over input channels,
    of which there is one, and took a quarter of a phase-1 step at ~7 GFLOP/s. Here
    ``taps = upstream · kernelᵀ`` (rows·h'·w', maps) × (maps, kh·kw), then tap (i, j) of every
    output position is added to the pixel it came from. Float sums in another order: the
    gradient differs from oneDNN's by round-off (~1e-7 relative), which ten ascent steps can
    grow to ~1e-3 on a few starts (docs/PERFORMANCE.md, "The step near the roofline").
    """
    @tf.custom_gradient
    def convolve(pixels, kernel, bias):
        def gradient(upstream):
            return pixel_gradient(upstream, kernel), None, None

        return tf.nn.bias_add(tf.nn.conv2d(pixels, kernel, 1, "VALID"), bias), gradient

    return convolve(pixels, tf.convert_to_tensor(kernel), tf.convert_to_tensor(bias))


def pixel_gradient(upstream, kernel):
    """The gradient (rows, h, w, 1) to the pixels of :func:`_pixel_conv`'s convolution, from
    the gradient ``upstream`` (rows, h - kh + 1, w - kw + 1, maps) of its output."""
    kh, kw, _, maps = (int(n) for n in kernel.shape)
    h, w = int(upstream.shape[1]), int(upstream.shape[2])
    taps = tf.matmul(tf.reshape(upstream, [-1, maps]), tf.reshape(kernel, [kh * kw, maps]), transpose_b=True)
    taps = tf.transpose(tf.reshape(taps, [-1, h, w, kh * kw]), [3, 0, 1, 2])  # (kh·kw, rows, h', w')
    shifted = [tf.pad(taps[i * kw + j], [[0, 0], [i, kh - 1 - i], [j, kw - 1 - j]])
               for i in range(kh) for j in range(kw)]
    return tf.add_n(shifted)[..., None]


def moved(images, pixel_gradients, learning_rate):
    """``images`` (rows, 28, 28, 1) one ascent step along ``pixel_gradients`` (rows, e, e, 1),
    the gradient to the top-left e² pixels the layers read: padded with zeros to the image (the
    same numbers as the gradient of the crop, without TensorFlow's slow StridedSliceGrad),
    normalized by its RMS over the whole image."""
    margin = int(images.shape[1]) - int(pixel_gradients.shape[1])
    gradients = tf.pad(pixel_gradients, [[0, 0], [0, margin], [0, margin], [0, 0]])
    rms = tf.sqrt(tf.reduce_mean(tf.square(gradients), axis=[1, 2, 3], keepdims=True))
    return images + learning_rate * gradients / (rms + RMS_EPSILON)


def in_chunks(array: np.ndarray, rows: int) -> np.ndarray:
    """``array`` (N, ...) as chunks (chunks, rows, ...), the last one padded with zeros."""
    padded = np.pad(array, [(0, -len(array) % rows)] + [(0, 0)] * (array.ndim - 1))
    return padded.reshape(-1, rows, *array.shape[1:])


class _Compiled(NamedTuple):
    """The compiled functions of one chunk shape (:meth:`Ascent._functions`)."""

    ascend: tf.types.experimental.PolymorphicFunction
    losses: tf.types.experimental.PolymorphicFunction
    step: tf.types.experimental.PolymorphicFunction
    features: tf.types.experimental.PolymorphicFunction
    feature_losses: tf.types.experimental.PolymorphicFunction


def _chunkwise(compute, images, weights, output_spec):
    """``compute(chunk images, chunk weights)`` for each chunk of images (chunks, rows, 28, 28,
    1) and weights (per layer (chunks, rows, maps)), one chunk after the other in a loop in
    the graph, outputs stacked (chunks, ...): one call from Python for every chunk, the
    same arithmetic as one call per chunk. The chunk's computation is a function of its own
    (NO_INLINE), for oneDNN's kernels, as in :meth:`Ascent._ascend_graph`."""
    once = _graph_function(compute, experimental_attributes=NO_INLINE)
    return tf.map_fn(lambda chunk: once(chunk[0], chunk[1]), (images, weights), fn_output_signature=output_spec,
                     parallel_iterations=1)


class Ascent:
    """Gradient ascent on a trained CNN towards per-image objectives over ``layers``.

    ``layers``: names of the layers the objectives may use, e.g. ("conv3",).
    ``model``: a keras.Sequential (the dreamctl CNN); its weights are only read.
    """

    def __init__(self, model: keras.Model, layers: Sequence[str], chunk_size: int = CHUNK_SIZE):
        layer_names = [layer.name for layer in model.layers]
        unknown = [name for name in layers if name not in layer_names]
        if unknown:
            raise BadInput(f"unknown layer {unknown[0]!r}; the model has {', '.join(layer_names)}")
        self.layers = tuple(layers)
        self.chunk_size = int(chunk_size)
        self._chain, self.input_extent = _layer_chain(model, self.layers)
        self.n_maps = tuple(int(model.get_layer(name).output.shape[-1]) for name in self.layers)
        self._compiled: dict[tuple, _Compiled] = {}  # (rows, warm-up kind, sliced) -> its functions
        self._features: tuple[tuple, tf.Tensor] | None = None  # ((rows, digest), features) of the last starts (_losses)

    @cached_property
    def _feature_shape(self) -> tuple[int, ...]:
        """(h, w, channels) of the input of the chain's last layer."""
        pixels = tf.zeros([1, self.input_extent, self.input_extent, 1])
        return tuple(int(n) for n in self._chain_part(pixels, 0, len(self._chain) - 1)[0].shape[1:])

    def _functions(self, n_rows: int, warmup_kind: str | None, sliced: bool) -> tuple[int, _Compiled]:
        """(rows, functions) compiled for a chunk shape: the smallest power of two ≥ n_rows,
        capped at ``chunk_size``; each (shape, variant) is traced once, each function when
        first called. ``ascend`` takes one chunk and runs many steps; the others take every
        chunk at once, stacked (chunks, rows, ...), and compute them one by one
        (:func:`_chunkwise`): ``losses``; ``step``, one step without a warm-up
        (:meth:`_step`); ``features``, the input of the chain's last layer, and
        ``feature_losses``, the losses from it (sliced only; see :meth:`_losses`)."""
        rows = min(self.chunk_size, 1 << max(0, int(n_rows) - 1).bit_length())
        key = (rows, warmup_kind, sliced)
        if key not in self._compiled:
            image_spec = tf.TensorSpec([rows, IMAGE_SIZE, IMAGE_SIZE, 1], tf.float32)
            weight_specs = tuple(tf.TensorSpec([rows, 1 if sliced else n], tf.float32) for n in self.n_maps)
            warmup_spec, map_spec = tf.TensorSpec([rows], tf.int32), tf.TensorSpec([], tf.int32)
            scalar_specs = [tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.float32)]
            stacked_images = tf.TensorSpec([None, *image_spec.shape], tf.float32)
            stacked_weights = tuple(tf.TensorSpec([None, *spec.shape], tf.float32) for spec in weight_specs)
            loss_spec = tf.TensorSpec([rows], tf.float32)
            feature_spec = tf.TensorSpec([rows, *self._feature_shape], tf.float32)

            def ascend(images, weights, warmup, map_id, epochs, learning_rate):
                return self._ascend_graph(images, weights, warmup, map_id if sliced else None,
                                          epochs, learning_rate, warmup_kind)

            def losses(images, weights, map_id):
                return _chunkwise(lambda x, w: self._objectives(self._pixels(x), w, map_id if sliced else None)[0],
                                  images, weights, loss_spec)

            def step(images, weights, map_id, learning_rate):
                return _chunkwise(lambda x, w: self._step(x, w, map_id if sliced else None, learning_rate),
                                  images, weights, (image_spec, loss_spec))

            def features(images):
                return _chunkwise(lambda x, _: self._chain_part(self._pixels(x), 0, len(self._chain) - 1)[0],
                                  images, (), feature_spec)

            def feature_losses(features, weights, map_id):
                def compute(x, w):
                    _, post = self._chain_part(x, len(self._chain) - 1, len(self._chain), map_id)[1][self.layers[0]]
                    return self._weighted_means([post], w)
                return _chunkwise(compute, features, weights, loss_spec)

            self._compiled[key] = _Compiled(
                _graph_function(ascend, input_signature=[image_spec, weight_specs, warmup_spec, map_spec, *scalar_specs]),
                _graph_function(losses, input_signature=[stacked_images, stacked_weights, map_spec]),
                _graph_function(step, input_signature=[stacked_images, stacked_weights, map_spec, scalar_specs[1]]),
                _graph_function(features, input_signature=[stacked_images]),
                _graph_function(feature_losses, input_signature=[tf.TensorSpec([None, *feature_spec.shape], tf.float32),
                                                                 stacked_weights, map_spec]),
            )
        return rows, self._compiled[key]

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
    def _pixels(self, images):
        """The part of images (rows, 28, 28, 1) the layers read: the top-left input_extent²."""
        return images[:, : self.input_extent, : self.input_extent, :]

    def _activations(self, pixels, map_slice=None) -> list[tuple]:
        """(pre-activation, activation) of each objective layer, each (rows, h, w, maps), from
        ``pixels`` (rows, ≥ input_extent, ≥ input_extent, 1); with ``map_slice`` the last layer
        of the chain computes that one map only."""
        found = self._chain_part(pixels, 0, len(self._chain), map_slice)[1]
        return [found[name] for name in self.layers]

    def _chain_part(self, x, first: int, stop: int, map_slice=None) -> tuple:
        """Layers ``first`` to ``stop - 1`` of the chain on ``x``, their input: (output,
        {layer name: (pre-activation, activation)} of the layers computed one by one).

        Layers that no objective reads take two shortcuts with the same activations:
        a Conv2D + ReLU + MaxPooling2D pools before its ReLU (:func:`_pools_before_relu`), and
        the first Conv2D on single-channel images takes its pixel gradient as a matrix
        product (:func:`_pixel_conv`). Neither spans the last layer (an objective's), so
        the chain can be cut before it."""
        found, chain = {}, self._chain
        index = first
        while index < stop:
            layer = chain[index]
            following = chain[index + 1] if index + 1 < len(chain) else None
            shortcut = layer is not chain[-1] and layer.name not in self.layers and following.name not in self.layers
            if shortcut and _pools_before_relu(layer, following):
                if index == 0 and _reads_pixels(layer, int(x.shape[-1])):
                    pre = _pixel_conv(x, layer.kernel, layer.bias)
                else:
                    pre = tf.nn.bias_add(layer.convolution_op(x, layer.kernel), layer.bias)
                x = tf.nn.relu(following(pre, training=False))
                index += 2
                continue
            if isinstance(layer, keras.layers.Conv2D):
                channel = map_slice if layer is chain[-1] else None
                pre, x = _conv_parts(layer, x, channel)
            else:
                pre = x = layer(x, training=False)
            found[layer.name] = (pre, x)
            index += 1
        return x, found

    def _objectives(self, images, weights, map_slice=None, warmup_kind=None, warming=None):
        """(losses, ascended), both (rows,): the post-ReLU objective of each image, and the
        objective whose gradient it follows: its warm-up surrogate where ``warming`` (bool
        (rows,)) is true, else the losses themselves (the same tensor without a warm-up)."""
        activations = self._activations(images, map_slice)
        losses = self._weighted_means([post for _, post in activations], weights)
        if warmup_kind is None:
            return losses, losses
        if warmup_kind == "pre_relu":
            surrogate = self._weighted_means([pre for pre, _ in activations], weights)
        else:  # "leaky_relu": the value of the ReLU, the gradient of a leaky ReLU
            negative = [tf.minimum(pre, 0.0) for pre, _ in activations]
            surrogate = self._weighted_means([post + LEAKY_SLOPE * (n - tf.stop_gradient(n))
                                              for (_, post), n in zip(activations, negative)], weights)
        return losses, tf.where(warming, surrogate, losses)

    @staticmethod
    def _weighted_means(per_layer, weights):
        """(rows,): per image, the sum over layers of its maps' spatial means times their weights."""
        return tf.add_n([tf.reduce_sum(tf.reduce_mean(a, axis=[1, 2]) * w, axis=1) for a, w in zip(per_layer, weights)])

    def _step(self, images, weights, map_slice, learning_rate, warmup_kind=None, warming=None):
        """One ascent step: (images one step further, their losses where they were), shapes
        (rows, 28, 28, 1) and (rows,); the gradient is taken with respect to the pixels the
        layers read (:func:`moved`)."""
        pixels = self._pixels(images)
        with tf.GradientTape() as tape:
            tape.watch(pixels)
            losses, ascended = self._objectives(pixels, weights, map_slice, warmup_kind, warming)
            total = tf.reduce_sum(ascended)
        return moved(images, tape.gradient(total, pixels), learning_rate), losses

    def _ascend_graph(self, images, weights, warmup, map_slice, epochs, learning_rate, warmup_kind):
        history = tf.TensorArray(tf.float32, size=epochs + 1, element_shape=images.shape[:1])

        # One step is a function of its own, not inlined into the loop (NO_INLINE). Inlined,
        # the loop's body is part of a cyclic graph, where oneDNN's layout pass visits nodes
        # in an order that changes from trace to trace; in about one trace in three it then
        # leaves a MaxPoolGrad on TensorFlow's own kernel, which made the whole step ~1.5×
        # slower. A separate body is acyclic: every trace gets oneDNN's kernels
        # (docs/PERFORMANCE.md, "One step, one function"). Same arithmetic either way.
        @_graph_function(experimental_attributes=NO_INLINE)
        def ascend_once(images, warming):
            return self._step(images, weights, map_slice, learning_rate, warmup_kind, warming)

        def step(epoch, images, history):
            images, losses = ascend_once(images, epoch < warmup)
            return epoch + 1, images, history.write(epoch, losses)

        _, images, history = tf.while_loop(
            lambda epoch, *_: epoch < epochs, step, (tf.constant(0), images, history)
        )
        final_losses = self._objectives(self._pixels(images), weights, map_slice)[0]
        return images, final_losses, history.write(epochs, final_losses).stack()

    # ----- chunked execution --------------------------------------------------------------
    @staticmethod
    def _stacked_images(images: np.ndarray, rows: int) -> tf.Tensor:
        """Images (N, 28, 28) as chunks (chunks, rows, 28, 28, 1), the last one padded with zeros."""
        return tf.constant(in_chunks(images, rows)[..., None], tf.float32)

    @staticmethod
    def _stacked_weights(weights: Sequence[np.ndarray], rows: int) -> tuple[tf.Tensor, ...]:
        """Weights (N, maps) per layer as chunks (chunks, rows, maps), the padding rows zero."""
        return tuple(tf.constant(in_chunks(w, rows)) for w in weights)

    @classmethod
    def _stacked(cls, images: np.ndarray, weights: Sequence[np.ndarray], rows: int) -> tuple:
        """:meth:`_stacked_images` and :meth:`_stacked_weights`: the padding images have zero weight."""
        return cls._stacked_images(images, rows), cls._stacked_weights(weights, rows)

    def _losses(self, images: np.ndarray, weights: Sequence[np.ndarray], map_slice: int | None,
                shape_of: int | None = None, starts: bool = False) -> tuple[np.ndarray, int]:
        """Post-ReLU objectives (N,) of checked images, and how many images went through every
        layer for them (N, or 0 when kept features served); ``weights`` already sliced to the
        map's column when ``map_slice`` is given; ``shape_of`` as in :meth:`_advance`.

        ``starts``: the images are a set of starts that may be scored again for other maps
        (the precursor scores all 128 on the same patterns). With ``map_slice``, what the
        layers below the map's layer compute for them does not depend on the map: it is
        kept for the last such set and reused, the same arithmetic chunk by chunk."""
        if not len(images):
            return np.zeros(0, np.float32), 0
        rows, compiled = self._functions(len(images) if shape_of is None else shape_of, None, map_slice is not None)
        passes = len(images)
        stacked_weights = self._stacked_weights(weights, rows)
        map_id = tf.constant(map_slice or 0, tf.int32)
        if map_slice is None or not starts:
            losses = compiled.losses(self._stacked_images(images, rows), stacked_weights, map_id)
        else:
            key = (rows, hashlib.sha256(np.ascontiguousarray(images).data).digest())
            if self._features is None or self._features[0] != key:
                self._features = None  # the old features' memory first
                self._features = (key, compiled.features(self._stacked_images(images, rows)))
            else:
                passes = 0  # the map's own layer alone, ~0.3 % of a pass on the dreamctl CNN
            losses = compiled.feature_losses(self._features[1], stacked_weights, map_id)
        return losses.numpy().reshape(-1)[: len(images)], passes

    def _advance(self, images, weights, epochs, learning_rate, warmup, warmup_kind, map_slice, shape_of=None):
        """Run ``epochs`` steps on every image given (no skipping). Returns final images
        (N, 28, 28), losses (N,) and the loss history (epochs + 1, N). ``shape_of``: run in
        the chunk shape that many images would get (default N). A pruned run's later stages
        keep the first stage's shape: oneDNN may sum in another order for another batch
        size, and the survivors' losses must be the exhaustive run's to the bit."""
        kind = warmup_kind if np.any(warmup > 0) else None  # no warm-up: the plain graph
        rows, compiled = self._functions(len(images) if shape_of is None else shape_of, kind, map_slice is not None)
        out_images = np.empty_like(images)
        out_losses = np.empty(len(images), np.float32)
        history = np.empty((epochs + 1, len(images)), np.float32)
        constants = (tf.constant(map_slice or 0, tf.int32), tf.constant(epochs, tf.int32),
                     tf.constant(learning_rate, tf.float32))
        stacked_images, stacked_weights = self._stacked(images, weights, rows)
        warmups = np.pad(warmup, (0, -len(images) % rows)).reshape(-1, rows)
        for chunk, chunk_warmup in enumerate(warmups):
            start, stop = chunk * rows, min((chunk + 1) * rows, len(images))
            final, losses, loss_history = compiled.ascend(stacked_images[chunk], tuple(w[chunk] for w in stacked_weights),
                                                          tf.constant(chunk_warmup), *constants)
            out_images[start:stop] = final.numpy()[: stop - start, :, :, 0]
            out_losses[start:stop] = losses.numpy()[: stop - start]
            history[:, start:stop] = loss_history.numpy()[:, : stop - start]
        return out_images, out_losses, history

    def _step_chunks(self, images, weights, learning_rate, map_slice, shape_of) -> tuple[np.ndarray, np.ndarray]:
        """One step without a warm-up on every image given: (images one step further (N, 28,
        28), the losses (N,) where they were), in the chunk shape ``shape_of`` images get.
        The same arithmetic as a step of :meth:`_advance` (the same :meth:`_step`)."""
        rows, compiled = self._functions(shape_of, None, map_slice is not None)
        moved, losses = compiled.step(*self._stacked(images, weights, rows), tf.constant(map_slice or 0, tf.int32),
                             tf.constant(learning_rate, tf.float32))
        return (moved.numpy().reshape(-1, IMAGE_SIZE, IMAGE_SIZE)[: len(images)],
                losses.numpy().reshape(-1)[: len(images)])

    def _check(self, images: np.ndarray, weights: Sequence[np.ndarray]) -> np.ndarray:
        images = np.asarray(images, np.float32)
        if images.ndim != 3 or images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise BadInput(f"images must have shape (N, 28, 28), got {images.shape}")
        if len(weights) != len(self.layers) or any(
            np.shape(w) != (len(images), n) for w, n in zip(weights, self.n_maps)
        ):
            raise BadInput("need one weight array (N, maps of the layer) per layer")
        return images

    def _check_warmup(self, warmup, n_images: int, warmup_kind: str) -> np.ndarray:
        if warmup_kind not in WARMUP_KINDS:
            raise BadParameter("warmup_kind", f"must be one of {', '.join(WARMUP_KINDS)}, got {warmup_kind!r}")
        steps = np.broadcast_to(np.asarray(warmup), (n_images,))
        if not np.issubdtype(steps.dtype, np.integer) or np.any(steps < 0):
            raise BadParameter("warmup", "must be whole numbers of steps >= 0")
        return steps.astype(np.int32)

    def _map_slice(self, map_ids: np.ndarray, slice_map: bool) -> int | None:
        """The one map every image targets, when slicing applies (one layer, one map)."""
        if slice_map and len(self.layers) == 1 and len(map_ids) and np.all(map_ids == map_ids[0]):
            return int(map_ids[0])
        return None

    # ----- public API -------------------------------------------------------------------
    def losses(self, images: np.ndarray, weights: Sequence[np.ndarray]) -> np.ndarray:
        """Objective values of images (N, 28, 28) without any step; float32 (N,)."""
        return self._losses(self._check(images, weights), weights, None)[0]

    def run(
        self,
        images: np.ndarray,
        weights: Sequence[np.ndarray],
        epochs: int,
        learning_rate: float = LEARNING_RATE,
        record_epochs: Sequence[int] | None = None,
        skip_frozen: bool = True,
        warmup: int | np.ndarray = 0,
        warmup_kind: str = "pre_relu",
    ) -> AscentResult:
        """Run ``epochs`` ascent steps on images (N, 28, 28) with per-image weights.

        weights: one float32 array (N, maps) per layer of this ascent.
        record_epochs: the step counts e (0..epochs) whose losses go into ``history``
        (default: only ``epochs``).
        skip_frozen: images whose objective is exactly 0 with non-negative weights have a
        zero gradient (every weighted ReLU output is 0), so they never move; they are not
        computed and keep loss 0. This gives the same result, much faster on dead maps.
        Images in a warm-up are never skipped: their surrogate has a gradient.
        warmup: steps (an int, or int (N,) per image) that follow the ``warmup_kind``
        surrogate (see the module docstring) before the post-ReLU objective; 0 = none.
        """
        return self._run(images, weights, epochs, learning_rate, record_epochs, skip_frozen, warmup, warmup_kind, None)

    def _run(self, images, weights, epochs, learning_rate, record_epochs, skip_frozen, warmup, warmup_kind,
             map_slice: int | None) -> AscentResult:
        """:meth:`run`; with ``map_slice`` the layer computes only that map (see run_maps)."""
        images = self._check(images, weights)
        if epochs < 0:
            raise BadInput(f"epochs must be >= 0, got {epochs}")
        warmup = self._check_warmup(warmup, len(images), warmup_kind)
        record = tuple(sorted(set(record_epochs))) if record_epochs is not None else (epochs,)
        if record and (record[0] < 0 or record[-1] > epochs):
            raise BadInput(f"record_epochs must lie in 0..{epochs}")
        if map_slice is not None:
            weights = [w[:, [map_slice]] for w in weights]
        out_images = images.copy()
        out_losses = np.zeros(len(images), np.float32)
        history = np.zeros((len(record), len(images)), np.float32)
        active = np.arange(len(images))
        if skip_frozen:
            non_negative = np.all([np.all(w >= 0, axis=1) for w in weights], axis=0)
            moving = ~non_negative | (warmup > 0) | (self._losses(images, weights, map_slice, starts=True)[0] != 0.0)
            active = np.flatnonzero(moving)
        final, losses, loss_history = self._advance(
            images[active], [w[active] for w in weights], epochs, learning_rate, warmup[active], warmup_kind, map_slice
        )
        out_images[active], out_losses[active] = final, losses
        history[:, active] = loss_history[list(record)]
        return AscentResult(out_images, out_losses, history, record)

    def run_maps(
        self,
        images: np.ndarray,
        layer: str,
        map_ids: np.ndarray,
        epochs: int,
        learning_rate: float = LEARNING_RATE,
        record_epochs: Sequence[int] | None = None,
        warmup: int | np.ndarray = 0,
        warmup_kind: str = "pre_relu",
        slice_map: bool = False,
    ) -> AscentResult:
        """OIP ascent: image i maximizes the mean activation of map ``map_ids[i]`` of ``layer``.

        slice_map: when every image targets the same map (a precursor phase-1 shard) and
        ``layer`` is this ascent's only layer, compute that map alone in the layer (same
        losses up to float round-off, ~1e-7 relative).
        """
        weights = self.map_objective(layer, map_ids)
        map_slice = self._map_slice(np.asarray(map_ids), slice_map)
        return self._run(images, weights, epochs, learning_rate, record_epochs, True, warmup, warmup_kind, map_slice)

    def run_pruned(
        self,
        images: np.ndarray,
        layer: str,
        map_ids: np.ndarray,
        epochs: int,
        schedule: Sequence[tuple[int, int]] = PRUNE_SCHEDULE,
        learning_rate: float = LEARNING_RATE,
        warmup: int | np.ndarray = 0,
        warmup_kind: str = "pre_relu",
        slice_map: bool = False,
    ) -> PrunedResult:
        """OIP ascent by successive halving: only the best starts of each map run to the end.

        images (N, 28, 28) and map_ids (N,) as in :meth:`run_maps`. ``schedule``: pairs
        (step, keep) with increasing steps and non-increasing keeps: every live start runs
        to the first step; then, separately for each map, the ``keep`` starts with the
        highest loss (ties: lower index first) go on to the next step, and so on; the last
        survivors run to ``epochs``. Cuts at steps ≥ ``epochs`` do nothing; an empty
        schedule is the exhaustive run. E.g. ((2, 2048), (5, 128)) with epochs 10.

        Frozen starts (loss exactly 0 with no warm-up) are not computed, as in :meth:`run`.
        Cuts rank by the post-ReLU loss: with a warm-up, cut after it (a start still warming
        up may have loss 0).
        A survivor's image and loss are bit-identical to an uninterrupted run of
        ``epochs`` steps: each stage resumes from the images the last one reached, and the
        step is memoryless.

        ``keep`` counts starts per map **within this call**, not scaled to the share of the
        map's patterns the call holds: a precursor shard of 4,096 of a map's 19,683
        patterns keeps the same counts as the whole map would. Then a start that is among
        the map's ``keep`` best at every cut (ranked among all its starts) is also among
        its shard's ``keep`` best (its rank in a subset can only be better), so it survives
        however the map is cut into shards: a schedule measured map-wide holds per shard,
        each shard stays independent and resumable, and its result depends on nothing but
        its own patterns. Scaling keep by the shard's share (2048 × 4096 / 19683 ≈ 427)
        would lose any winner that shares a shard with more than 427 better starts. The
        price is more work than a map-wide cut when a map spans several shards.
        """
        weights = self.map_objective(layer, map_ids)
        images = self._check(images, weights)
        map_ids = np.asarray(map_ids, np.int64)
        if epochs < 0:
            raise BadInput(f"epochs must be >= 0, got {epochs}")
        warmup = self._check_warmup(warmup, len(images), warmup_kind)
        cuts = check_schedule(schedule)
        cuts = [(step, keep) for step, keep in cuts if step < epochs]
        map_slice = self._map_slice(map_ids, slice_map)
        if map_slice is not None:
            weights = [w[:, [map_slice]] for w in weights]

        out_images = images.copy()
        out_losses, loss_passes = self._losses(images, weights, map_slice, starts=True)
        moving = (out_losses != 0.0) | (warmup > 0)
        reached = np.where(moving, 0, epochs).astype(np.int32)  # frozen starts: exact at any step
        active, done, image_steps = np.flatnonzero(moving), 0, 0
        for stop, keep in [*cuts, (epochs, None)]:
            final, losses, _ = self._advance(out_images[active], [w[active] for w in weights], stop - done,
                                             learning_rate, np.maximum(warmup[active] - done, 0), warmup_kind, map_slice,
                                             shape_of=int(moving.sum()))
            out_images[active], out_losses[active], reached[active] = final, losses, stop
            image_steps += len(active) * (stop - done)
            loss_passes += len(active)
            if keep is not None:
                active = _best_per_map(active, out_losses, map_ids, keep)
            done = stop
        return PrunedResult(out_images, out_losses, reached, image_steps, 0, loss_passes)

    def run_adaptive(
        self,
        images: np.ndarray,
        layer: str,
        map_ids: np.ndarray,
        epochs: int,
        top: int,
        sample: int = ADAPTIVE_SAMPLE,
        leaders_count: int = ADAPTIVE_LEADERS,
        margin: float = ADAPTIVE_MARGIN,
        seed: int | Sequence[int] = 0,
        learning_rate: float = LEARNING_RATE,
        slice_map: bool = False,
        look_first: float = ADAPTIVE_LOOK_FIRST,
    ) -> PrunedResult:
        """OIP ascent with adaptive pruning (:mod:`core.pruning`): separately for each map,
        ``sample`` random live starts and the ``leaders_count`` with the highest initial loss
        run to the end; from them the map learns a bar (their ``top``-th best final loss) and
        how fast a start can still climb; then at every step from 0 a start whose bound falls
        below the bar is dropped. Frozen starts are not computed (as in :meth:`run`). A map with no more live
        starts than ``sample + leaders_count + top`` runs them all to the end.

        images (N, 28, 28), map_ids (N,) as in :meth:`run_maps`; ``seed``: the random
        sample's seed (with the map id), e.g. the caller's shard id, so that the result
        depends on nothing but the starts given. ``look_first``: a start whose slack at the
        last cut was below this fraction of the bar gets its loss before its step (only the
        cost changes, never a result; 0 steps every start first). Returns a
        :class:`PrunedResult`; a survivor's image and loss are bit-identical to an
        uninterrupted run's.
        """
        weights = self.map_objective(layer, map_ids)
        images = self._check(images, weights)
        map_ids = np.asarray(map_ids, np.int64)
        if epochs < 0:
            raise BadInput(f"epochs must be >= 0, got {epochs}")
        if int(top) < 1:
            raise BadParameter("top", f"must be >= 1, got {top}")
        check_adaptive(sample, leaders_count, margin)
        if not np.isfinite(look_first) or look_first < 0:
            raise BadParameter("look_first", f"must be a finite number >= 0, got {look_first}")
        out_images = np.empty_like(images)  # every row is one map's: all are written below
        out_losses = np.zeros(len(images), np.float32)
        reached = np.full(len(images), epochs, np.int32)
        image_steps = discarded_steps = loss_passes = 0
        seed = [int(seed)] if np.isscalar(seed) else [int(v) for v in seed]
        for map_id in np.unique(map_ids):
            rows = np.flatnonzero(map_ids == map_id)
            map_slice = self._map_slice(map_ids[rows], slice_map)
            map_weights = [w[rows][:, [map_slice]] if map_slice is not None else w[rows] for w in weights]
            result = self._adaptive_map(images[rows], map_weights, map_slice, epochs, int(top), int(sample),
                                        int(leaders_count), float(margin), np.random.default_rng([*seed, int(map_id)]),
                                        learning_rate, float(look_first))
            out_images[rows], out_losses[rows], reached[rows] = result.images, result.losses, result.epochs_reached
            image_steps += result.image_steps
            discarded_steps += result.discarded_steps
            loss_passes += result.loss_passes
        return PrunedResult(out_images, out_losses, reached, image_steps, discarded_steps, loss_passes)

    def _adaptive_map(self, images, weights, map_slice, epochs, top, sample, leaders_count, margin, rng,
                      learning_rate, look_first) -> PrunedResult:
        """:meth:`run_adaptive` for the starts of one map (weights already sliced); ``images``
        (the caller's copy) are stepped in place."""
        losses, loss_passes = self._losses(images, weights, map_slice, starts=True)
        out_images = images
        reached = np.full(len(images), epochs, np.int32)
        previous = losses.copy()  # for the starts the cuts judge: the loss one step before the current one
        live = np.flatnonzero(losses != 0.0)  # frozen starts: exact at any step

        def advance(starts, steps):
            """Run ``starts`` ``steps`` further; returns their loss history (steps + 1, n)."""
            if not len(starts):
                return np.zeros((steps + 1, 0), np.float32)
            no_warmup = np.zeros(len(starts), np.int32)
            final, last, history = self._advance(out_images[starts], [w[starts] for w in weights], steps,
                                                 learning_rate, no_warmup, None, map_slice, shape_of=len(live))
            out_images[starts], losses[starts] = final, last
            return history

        if len(live) <= sample + leaders_count + top or epochs < 1:
            advance(live, epochs)
            return PrunedResult(out_images, losses, reached, len(live) * epochs, 0, loss_passes + len(live))
        first = first_finishers(live, sample, rng)
        rest = np.setdiff1d(live, first)
        ahead = leaders(rest, losses, leaders_count)  # the highest initial losses
        finished = np.union1d(first, ahead)
        finished_history = advance(finished, epochs)  # (epochs + 1, finished)
        finished_rates = np.diff(finished_history, axis=0)  # the loss each gained at steps 1 .. epochs
        bound = ClimbBound.learn(finished_history, top, margin)
        active = np.setdiff1d(rest, ahead)
        image_steps, discarded_steps = len(finished) * epochs, 0

        def step_further(starts):
            """(images one step further, losses where they are) of ``starts``."""
            if not len(starts):
                return np.zeros((0, IMAGE_SIZE, IMAGE_SIZE), np.float32), np.zeros(0, np.float32)
            return self._step_chunks(out_images[starts], [w[starts] for w in weights], learning_rate, map_slice,
                                     shape_of=len(live))

        def losses_of(starts):
            """The losses of ``starts`` where they are: a forward pass, ~0.44 of a step."""
            return self._losses(out_images[starts], [w[starts] for w in weights], map_slice, shape_of=len(live))[0]

        # Past step 0 the cut needs each start's loss at the step. For most starts one call
        # gives it and the step itself; a start cut there has its step computed for nothing,
        # where a loss pass of its own for every start made each step taken ~1.45x as costly
        # (docs/PERFORMANCE.md, "One call per step"). So only the starts that were close to
        # the bar at the last cut (slack below look_first x the bar, most of them cut next)
        # get their loss first and their step if they stay ("Look before stepping"). Either
        # way a start's loss is the same bits, and so is every cut.
        slack = np.full(len(images), np.inf)  # each active start's slack at the last cut
        near = look_first * bound.bar if np.isfinite(bound.bar) else -np.inf  # no bar: nothing is cut
        for step in range(epochs):
            moved = np.empty((len(active), IMAGE_SIZE, IMAGE_SIZE), np.float32)  # each start a step further
            if step == 0:
                looked = np.ones(len(active), bool)  # every loss at step 0 is known already
                slack[active] = bound.slack(0, losses[active])
            else:
                looked = slack[active] < near
                at_step = np.empty(len(active), np.float32)
                moved[~looked], at_step[~looked] = step_further(active[~looked])
                at_step[looked] = losses_of(active[looked])
                loss_passes += int(np.count_nonzero(looked))
                previous[active], losses[active] = losses[active], at_step
                running_rates = np.concatenate([losses[active] - previous[active], finished_rates[step - 1]])
                slack[active] = bound.slack(step, losses[active], previous[active], float(running_rates.max()))
            kept = slack[active] >= 0
            reached[active[~kept]] = step
            discarded_steps += int(np.count_nonzero(~kept & ~looked))
            active, moved, looked = active[kept], moved[kept], looked[kept]
            moved[looked] = step_further(active[looked])[0]  # the kept starts not stepped before the cut
            out_images[active] = moved
            image_steps += len(active)
        if len(active):
            losses[active] = losses_of(active)
        loss_passes += len(finished) + len(active)
        return PrunedResult(out_images, losses, reached, image_steps, discarded_steps, loss_passes)


def check_schedule(schedule: Sequence[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    """Validate a successive-halving schedule ((step, keep), ...): steps ≥ 1 increasing,
    keeps ≥ 1 non-increasing. Returns it as a tuple of int pairs; raises BadParameter."""
    try:
        cuts = tuple((int(step), int(keep)) for step, keep in schedule)
    except (TypeError, ValueError):
        raise BadParameter("schedule", f"needs pairs (step, keep), got {schedule!r}") from None
    steps, keeps = [s for s, _ in cuts], [k for _, k in cuts]
    if any(s < 1 for s in steps) or any(b <= a for a, b in zip(steps, steps[1:])):
        raise BadParameter("schedule", f"steps must be >= 1 and increasing, got {steps}")
    if any(k < 1 for k in keeps) or any(b > a for a, b in zip(keeps, keeps[1:])):
        raise BadParameter("schedule", f"keep counts must be >= 1 and non-increasing, got {keeps}")
    return cuts


def _best_per_map(candidates: np.ndarray, losses: np.ndarray, map_ids: np.ndarray, keep: int) -> np.ndarray:
    """The ``keep`` candidates (indices) of each map with the highest loss, ties to the
    lower index; returned in increasing index order."""
    order = candidates[np.lexsort((candidates, -losses[candidates], map_ids[candidates]))]
    maps = map_ids[order]
    group_starts = np.flatnonzero(np.r_[True, maps[1:] != maps[:-1]]) if len(order) else np.array([], int)
    rank_in_map = np.arange(len(order)) - np.repeat(group_starts, np.diff(np.r_[group_starts, len(order)]))
    return np.sort(order[rank_in_map < keep])

