"""Ascent throughput (image-steps per second) on this machine.

Compares, in one process and one run (so machine noise hits all alike):
- the per-image Python loop (eager GradientTape, one image at a time): the baseline
  that architecture.md forbids;
- dreamctl's batched compiled ascent (core.ascent.Ascent) at several chunk sizes;
- skip_frozen on a map with few active patterns (the precursor's phase 1 on a weak map).
Each figure is the median of --repeats runs; ratios are to the baseline's median.

    .venv/bin/python benchmarks/bench_ascent.py [--model models/cnn.keras] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cluster.model_file import load_model  # noqa: E402
from core.ascent import LEARNING_RATE, Ascent  # noqa: E402
from core.patterns import precursor_images  # noqa: E402

EPOCHS = 10


def median_rate(run, n_image_steps: int, repeats: int) -> float:
    run()  # warm-up: tracing, caches
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return n_image_steps / statistics.median(seconds)


def python_loop(model, images, map_id):
    features = tf.keras.Model(model.inputs, model.get_layer("conv3").output)
    for image in images:
        x = tf.constant(image[None, :, :, None])
        for _ in range(EPOCHS):
            with tf.GradientTape() as tape:
                tape.watch(x)
                loss = tf.reduce_mean(features(x, training=False)[..., map_id])
            g = tape.gradient(loss, x)
            x = x + LEARNING_RATE * g / (tf.sqrt(tf.reduce_mean(g * g)) + 1e-8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/cnn.keras")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    model, _ = load_model(args.model)
    print(f"TensorFlow threads: intra {tf.config.threading.get_intra_op_parallelism_threads() or 'all'}; "
          f"{os.cpu_count()} CPUs; {EPOCHS} epochs per image")

    patterns = precursor_images(np.arange(0, 19683, 19683 // 1024)[:1024], 3, (0.2, 0.5, 0.8))
    loop_images = patterns[:16]
    baseline = median_rate(lambda: python_loop(model, loop_images, 5), len(loop_images) * EPOCHS, args.repeats)
    print(f"{'per-image python loop (baseline)':42s} {baseline:10,.0f} image-steps/s   1.0x")

    for chunk in (64, 128, 256, 512):
        ascent = Ascent(model, ["conv3"], chunk_size=chunk)
        weights = ascent.map_objective("conv3", np.full(len(patterns), 5))
        rate = median_rate(lambda: ascent.run(patterns, weights, EPOCHS, skip_frozen=False),
                           len(patterns) * EPOCHS, args.repeats)
        print(f"{f'batched compiled ascent, chunk {chunk}':42s} {rate:10,.0f} image-steps/s {rate / baseline:6.1f}x")

    ascent = Ascent(model, ["conv3"], chunk_size=256)
    losses0 = [ascent.losses(patterns, ascent.map_objective("conv3", np.full(len(patterns), m))) for m in range(128)]
    weak_map = int(np.argmin([np.mean(l > 0) for l in losses0]))
    share = float(np.mean(losses0[weak_map] > 0))
    weights = ascent.map_objective("conv3", np.full(len(patterns), weak_map))
    for skip in (False, True):
        rate = median_rate(lambda: ascent.run(patterns, weights, EPOCHS, skip_frozen=skip),
                           len(patterns) * EPOCHS, args.repeats)
        label = f"map {weak_map} ({share:.0%} active), skip_frozen={skip}"
        print(f"{label:42s} {rate:10,.0f} image-steps/s {rate / baseline:6.1f}x")


if __name__ == "__main__":
    main()
