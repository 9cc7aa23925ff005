"""One ascent step as an actor runs it: time per trace, the pooling-gradient kernels, where the time goes.

TensorFlow optimizes a compiled function anew each time it is traced, and on this CPU the
outcome used to vary: oneDNN's layout pass rewrote each MaxPoolGrad of the step to its own
kernel in only about two traces in three (it visits a cyclic while-loop graph in an order
that changes from trace to trace), and TensorFlow's own MaxPoolGrad is ~10× slower.
This compares, in one process and interleaved, --traces fresh traces of

- ``inlined``: the step inlined into the loop's body (dreamctl until 2026-11-29), the baseline;
- ``own function``: the step as a function of its own (``core.ascent``, today);

each on --patterns precursor patterns of map --map × 10 steps, conv3 sliced to the map as in
phase 1, 1 TF thread (an actor). Per trace: seconds, and which kernel ran each MaxPoolGrad.
Then the time per op of the current step, from TensorFlow's profiler.

    .venv/bin/python benchmarks/bench_step.py [--model models/cnn.keras] [--map 69] [--traces 6]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from core.defaults import tensorflow_environment  # noqa: E402

tensorflow_environment()  # before TensorFlow's first import: oneDNN's kernels, as in an actor

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cluster.model_file import load_model  # noqa: E402
from cluster.tf_profile import op_seconds  # noqa: E402
from core.ascent import RMS_EPSILON, Ascent  # noqa: E402
from core.errors import BadInput  # noqa: E402
from core.patterns import precursor_images  # noqa: E402
from jobs.precursor import PrecursorJob  # noqa: E402

EPOCHS = 10


class InlinedAscent(Ascent):
    """The ascent with its step inlined into the while loop's body (the baseline)."""

    def _ascend_graph(self, images, weights, warmup, map_slice, epochs, learning_rate, warmup_kind):
        history = tf.TensorArray(tf.float32, size=epochs + 1, element_shape=images.shape[:1])

        def step(epoch, images, history):
            with tf.GradientTape() as tape:
                tape.watch(images)
                losses, ascended = self._objectives(images, weights, map_slice, warmup_kind, epoch < warmup)
                total = tf.reduce_sum(ascended)
            gradients = tape.gradient(total, images)
            rms = tf.sqrt(tf.reduce_mean(tf.square(gradients), axis=[1, 2, 3], keepdims=True))
            return epoch + 1, images + learning_rate * gradients / (rms + RMS_EPSILON), history.write(epoch, losses)

        _, images, history = tf.while_loop(lambda epoch, *_: epoch < epochs, step, (tf.constant(0), images, history))
        final_losses = self._objectives(images, weights, map_slice)[0]
        return images, final_losses, history.write(epochs, final_losses).stack()


def pool_grad_kernels(seconds: dict[str, float]) -> str:
    kernels = sorted({name.rsplit(":", 1)[1] for name in seconds if "MaxPoolGrad" in name.rsplit(":", 1)[1]})
    return " + ".join(kernels)


def spread_patterns(count: int) -> np.ndarray:
    """Start images (count, 28, 28) of ``count`` precursor patterns spread evenly over all of
    the default grid's; BadInput unless 1 <= count <= their number."""
    job = PrecursorJob()  # the default grid and levels
    total = len(job.levels) ** (job.grid**2)
    if not 1 <= count <= total:
        raise BadInput(f"--patterns must be 1-{total} (the default grid's patterns), got {count}")
    return precursor_images(np.arange(count) * (total // count), job.grid, job.levels)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def one_map_parser(description: str) -> argparse.ArgumentParser:
    """The options of a benchmark of the step on one map's patterns: --model, --map, --patterns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="models/cnn.keras")
    parser.add_argument("--map", type=int, default=69)
    parser.add_argument("--patterns", type=positive_int, default=4096)
    return parser


def one_map_setup(parser: argparse.ArgumentParser, args: argparse.Namespace) -> tuple:
    """(the model, the start images of --patterns patterns) for --map of conv3; a bad value
    of either option or a missing or damaged model ends the benchmark with a one-line error."""
    try:
        model, _ = load_model(Path(args.model))
        Ascent(model, ["conv3"]).map_objective("conv3", np.array([args.map]))  # the map exists
        return model, spread_patterns(args.patterns)
    except BadInput as error:
        parser.error(str(error))


def one_tensorflow_thread() -> None:
    """One thread for TensorFlow's ops, as in an actor with one CPU."""
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)


def main() -> None:
    parser = one_map_parser(__doc__.splitlines()[0])
    parser.add_argument("--traces", type=positive_int, default=6)
    args = parser.parse_args()
    one_tensorflow_thread()
    model, patterns = one_map_setup(parser, args)
    map_ids = np.full(len(patterns), args.map)
    variants = {"inlined (baseline)": InlinedAscent, "own function (today)": Ascent}
    seconds: dict[str, list[float]] = {name: [] for name in variants}
    print(f"map {args.map}, {len(patterns):,} patterns x {EPOCHS} steps, conv3 sliced, 1 TF thread; "
          f"{args.traces} fresh traces per variant, interleaved")
    for trace in range(args.traces):
        for name, kind in variants.items():
            ascent = kind(model, ["conv3"])
            def run(n=len(patterns), epochs=EPOCHS):
                ascent.run_maps(patterns[:n], "conv3", map_ids[:n], epochs, slice_map=True)
            kernels = pool_grad_kernels(op_seconds(lambda: run(256, 1)))  # traces and shows the kernels
            start = time.perf_counter()
            run()
            seconds[name].append(time.perf_counter() - start)
            print(f"  trace {trace + 1}  {name:22s} {seconds[name][-1]:6.2f} s   MaxPoolGrad kernels: {kernels}", flush=True)
    baseline = statistics.median(seconds["inlined (baseline)"])
    for name, runs in seconds.items():
        median = statistics.median(runs)
        print(f"{name:22s} median {median:6.2f} s  {len(patterns) * EPOCHS / median:7,.0f} image-steps/s  "
              f"{baseline / median:4.2f}x  (min {min(runs):.2f}, max {max(runs):.2f})")

    ascent = Ascent(model, ["conv3"])
    ascent.run_maps(patterns[:256], "conv3", map_ids[:256], 1, slice_map=True)
    per_op = op_seconds(lambda: ascent.run_maps(patterns, "conv3", map_ids, EPOCHS, slice_map=True))
    total = sum(per_op.values())
    print(f"\nwhere the time of one run goes (own function, profiler on): {total:.2f} s of ops")
    for name, value in per_op.most_common(12):
        node, kernel = name.rsplit(":", 1)
        print(f"  {value:6.2f} s {100 * value / total:5.1f} %  {kernel:32s} {'/'.join(node.split('/')[-3:])[:60]}")


if __name__ == "__main__":
    main()
