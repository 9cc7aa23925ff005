"""Would a look's forward pass serve the step of the starts the cut keeps? (issue 22, item 2)

The default phase 1 looks at the starts near the bar first (a forward pass for their
losses, ``Ascent._losses``) and steps the ones the cut keeps (``Ascent._step_chunks``), whose
step computes the same forward pass again. This measures the alternative: a forward pass
that also returns what the backward pass needs (the pre-pooling activations of conv1 and
conv2 and conv3's activation), then the backward pass and the step from them, for the kept
starts only, gathered into fresh chunks. The backward pass is written out op by op as
TensorFlow's gradient runs it (``ReluGrad``, ``Conv2DBackpropInput``, ``MaxPoolGrad`` on the
pooling recomputed beside it, so that oneDNN's layout pass gives it oneDNN's kernel, and
``core.ascent.pixel_gradient`` and ``moved``), and checked here to give the step's images to the
bit, for all starts and for a gathered third of them.

In one process, one TensorFlow thread (an actor), --patterns precursor patterns of map --map
one step in (a step of the current code first), conv3 sliced, chunks of 64; per call,
median of --repeats, interleaved: the step, the look, the forward pass that keeps, the
step from what it kept, each in CPU seconds (outputs as numpy arrays) and in seconds inside
TensorFlow's kernels (its profiler). Prints each as a fraction of the step, and by either
count the share of looked starts the cut must keep for the reuse to pay.
For the dreamctl CNN (conv1, pool1, conv2, pool2, conv3) only.

    .venv/bin/python benchmarks/bench_forward_reuse.py --model models/cnn.keras [--map 69] [--patterns 4096] [--repeats 5]
"""

from __future__ import annotations

import collections
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from core.defaults import tensorflow_environment  # noqa: E402

tensorflow_environment()  # oneDNN's kernels, as in an actor

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cluster.tf_profile import op_seconds  # noqa: E402
from core.ascent import NO_INLINE, Ascent, _chunkwise, _graph_function, in_chunks, moved, pixel_gradient  # noqa: E402
from core.defaults import LEARNING_RATE  # noqa: E402
from core.model import IMAGE_SIZE  # noqa: E402
from benchmarks.bench_step import one_map_parser, one_map_setup, one_tensorflow_thread, positive_int  # noqa: E402

LAYERS = ("conv1", "pool1", "conv2", "pool2", "conv3")
UNIT = [1, 1, 1, 1]


class ForwardReuse:
    """The forward pass that keeps (``keep``) and the step from what it kept (``step_from``),
    each over stacked chunks (chunks, rows, ...) like the Ascent's own functions."""

    def __init__(self, ascent: Ascent, model: keras.Model, rows: int):
        self.conv1, self.pool1, self.conv2, self.pool2, self.conv3 = (model.get_layer(name) for name in LAYERS)
        self.extent, self.rows = ascent.input_extent, rows
        probe = self._forward(tf.zeros([1, IMAGE_SIZE, IMAGE_SIZE, 1]), tf.ones([1, 1]), tf.constant(0))[1]
        kept_specs = tuple(tf.TensorSpec([rows, *t.shape[1:]]) for t in probe)
        self.shapes = [tuple(int(n) for n in t.shape[1:]) for t in probe]
        image_spec, weight_spec = tf.TensorSpec([rows, IMAGE_SIZE, IMAGE_SIZE, 1]), tf.TensorSpec([rows, 1])
        stacked = lambda spec: tf.TensorSpec([None, *spec.shape], spec.dtype)  # noqa: E731
        map_spec = tf.TensorSpec([], tf.int32)

        @_graph_function(input_signature=[stacked(image_spec), (stacked(weight_spec),), map_spec])
        def keep(images, weights, map_id):
            return _chunkwise(lambda x, w: self._forward(x, w[0], map_id), images, weights,
                              (tf.TensorSpec([rows]), kept_specs))

        @_graph_function(input_signature=[stacked(image_spec), (stacked(weight_spec),),
                                          tuple(stacked(spec) for spec in kept_specs), map_spec])
        def step_from(images, weights, kept, map_id):
            once = _graph_function(lambda x, w, k: self._step_from(x, w, k, map_id), experimental_attributes=NO_INLINE)
            return tf.map_fn(lambda chunk: once(chunk[0], chunk[1][0], chunk[2]), (images, weights, kept),
                             fn_output_signature=image_spec, parallel_iterations=1)

        self.keep, self.step_from = keep, step_from

    def _forward(self, images, weights, map_id):
        """(losses (rows,), kept: conv1's and conv2's pre-pooling activations, conv3's
        activation), the same ops as ``Ascent._chain_part`` for this CNN."""
        pixels = images[:, : self.extent, : self.extent, :]
        pre1 = tf.nn.bias_add(tf.nn.conv2d(pixels, self.conv1.kernel, 1, "VALID"), self.conv1.bias)
        pre2 = tf.nn.bias_add(self.conv2.convolution_op(tf.nn.relu(self.pool1(pre1, training=False)), self.conv2.kernel),
                              self.conv2.bias)
        kernel3, bias3 = tf.gather(self.conv3.kernel, map_id[None], axis=3), tf.gather(self.conv3.bias, map_id[None])
        pre3 = self.conv3.convolution_op(tf.nn.relu(self.pool2(pre2, training=False)), kernel3)
        post3 = self.conv3.activation(keras.ops.add(pre3, keras.ops.reshape(bias3, (1, 1, 1, -1))))
        losses = tf.add_n([tf.reduce_sum(tf.reduce_mean(post3, axis=[1, 2]) * weights, axis=1)])
        return losses, (pre1, pre2, post3)

    def _step_from(self, images, weights, kept, map_id):
        """Images (rows, 28, 28, 1) one step further, from what :meth:`_forward` kept: the
        ops of TensorFlow's gradient of ``Ascent._step``, in its order."""
        pre1, pre2, post3 = kept
        pooled1, pooled2 = self.pool1(pre1, training=False), self.pool2(pre2, training=False)
        rows, h3, w3, _ = (int(n) for n in post3.shape)
        grad = tf.tile(tf.reshape(tf.ones([rows, 1]) * weights, [rows, 1, 1, 1]), [1, h3, w3, 1]) / float(h3 * w3)
        grad = tf.raw_ops.ReluGrad(gradients=grad, features=post3)
        grad = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(pooled2), out_backprop=grad, strides=UNIT,
                                              filter=tf.gather(self.conv3.kernel, map_id[None], axis=3), padding="VALID")
        for pre, pooled, conv in ((pre2, pooled2, self.conv2), (pre1, pooled1, None)):
            grad = tf.raw_ops.ReluGrad(gradients=grad, features=tf.nn.relu(pooled))
            grad = tf.raw_ops.MaxPoolGrad(orig_input=pre, orig_output=pooled, grad=grad, ksize=[1, 2, 2, 1],
                                          strides=[1, 2, 2, 1], padding="VALID")
            if conv is not None:
                grad = tf.raw_ops.Conv2DBackpropInput(input_sizes=tf.shape(pooled1), filter=conv.kernel,
                                                      out_backprop=grad, strides=UNIT, padding="VALID")
        return moved(images, pixel_gradient(grad, self.conv1.kernel), LEARNING_RATE)


def cpu_seconds(call) -> float:
    """CPU seconds of ``call()`` until its outputs are numpy arrays."""
    started = time.process_time()
    for tensor in tf.nest.flatten(call()):
        tensor.numpy()
    return time.process_time() - started


def kernel_seconds(call) -> tuple[float, str]:
    """(seconds in TensorFlow's kernels over one call, the top kernels and their seconds)."""
    per_kernel: collections.Counter = collections.Counter()
    for name, seconds in op_seconds(lambda: [t.numpy() for t in tf.nest.flatten(call())]).items():
        per_kernel[name.rsplit(":", 1)[1]] += seconds
    return sum(per_kernel.values()), ", ".join(f"{kernel} {seconds:.3f}" for kernel, seconds in per_kernel.most_common(5))


def main() -> None:
    parser = one_map_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=positive_int, default=5)
    args = parser.parse_args()
    one_tensorflow_thread()
    model, starts = one_map_setup(parser, args)
    ascent = Ascent(model, ["conv3"])
    weights = [ascent.map_objective("conv3", np.full(len(starts), args.map))[0][:, [args.map]]]
    rows, compiled = ascent._functions(len(starts), None, True)
    reuse = ForwardReuse(ascent, model, rows)
    map_id, learning_rate = tf.constant(args.map, tf.int32), tf.constant(LEARNING_RATE, tf.float32)
    stacked_weights = ascent._stacked_weights(weights, rows)
    images = compiled.step(ascent._stacked_images(starts, rows), stacked_weights, map_id, learning_rate)[0]  # one step in

    stepped, losses = compiled.step(images, stacked_weights, map_id, learning_rate)
    looked, kept = reuse.keep(images, stacked_weights, map_id)
    assert np.array_equal(looked.numpy(), losses.numpy()), "the forward pass that keeps gives other losses"
    assert np.array_equal(reuse.step_from(images, stacked_weights, kept, map_id).numpy(), stepped.numpy()), \
        "the step from what was kept differs from the step"
    third = np.arange(0, len(starts), 3)  # the kept starts, gathered into chunks of their own
    flat = [k.numpy().reshape(-1, *shape)[third] for k, shape in zip(kept, reuse.shapes)]
    gathered = reuse.step_from(*ascent._stacked(images.numpy().reshape(-1, IMAGE_SIZE, IMAGE_SIZE)[third],
                                                [weights[0][third]], rows),
                               tuple(tf.constant(in_chunks(k, rows)) for k in flat), map_id)
    assert np.array_equal(gathered.numpy().reshape(-1, IMAGE_SIZE, IMAGE_SIZE)[: len(third)],
                          stepped.numpy().reshape(-1, IMAGE_SIZE, IMAGE_SIZE)[third]), "a gathered step differs"
    print(f"map {args.map}, {len(starts)} patterns, chunks of {rows}: the step from what was kept equals the step "
          f"to the bit, for all and for a gathered third")

    calls = {
        "step": lambda: compiled.step(images, stacked_weights, map_id, learning_rate),
        "look (losses)": lambda: compiled.losses(images, stacked_weights, map_id),
        "forward that keeps": lambda: reuse.keep(images, stacked_weights, map_id),
        "step from what was kept": lambda: reuse.step_from(images, stacked_weights, kept, map_id),
    }
    seconds = {name: [] for name in calls}
    profiled = {name: [] for name in calls}
    for _ in range(args.repeats):
        for name, call in calls.items():
            seconds[name].append(cpu_seconds(call))
            profiled[name].append(kernel_seconds(call))
    median = {name: statistics.median(values) for name, values in seconds.items()}
    in_kernels = {name: statistics.median(total for total, _ in runs) for name, runs in profiled.items()}
    for name, values in seconds.items():
        kernels = min(profiled[name], key=lambda run: abs(run[0] - in_kernels[name]))[1]  # the median call's
        print(f"  {name:24s} {median[name]:6.3f} CPU s = {median[name] / median['step']:.2f} step  "
              f"({' / '.join(f'{v:.3f}' for v in values)}); in TensorFlow's kernels {in_kernels[name]:.3f} s = "
              f"{in_kernels[name] / in_kernels['step']:.2f} step ({kernels})")
    for what, cost in (("CPU seconds", median), ("kernel seconds (moving what was kept costs nothing)", in_kernels)):
        look, keep, step_from = (cost[name] / cost["step"]
                                 for name in ("look (losses)", "forward that keeps", "step from what was kept"))
        # a looked start costs today look + (if kept) a step; with the reuse keep + (if kept) step_from
        share = (keep - look) / (1 - step_from) if step_from < 1 else np.inf
        verdict = ("pays for every start looked at" if share <= 0 else "never pays" if share >= 1 else
                   f"pays only where the cut keeps more than {share:.2f} of the starts looked at")
        print(f"by {what}: the reuse {verdict}")


if __name__ == "__main__":
    main()
