"""Defaults of the batched ascent that job specs and ``--help`` read without loading
TensorFlow (core/ascent.py imports them from here, the jobs too), and the environment
TensorFlow must find when it is first imported."""

from __future__ import annotations

import os

LEARNING_RATE = 0.05  # η of an OIP ascent step, in units of the standardized pixel values (algorithms.md §2)
# Images per compiled ascent step (rows of one tf.function call): fastest on AVX-512, within
# 2 % of 128 on a real AVX2-only CPU (docs/PERFORMANCE.md).
CHUNK_SIZE = 64
WARMUP_KINDS = ("pre_relu", "leaky_relu")  # objectives of the first warm-up steps (core.ascent)
# Successive halving of the precursor's phase 1: (step, starts kept per map and call) for
# 10 steps in shards of 4,096. Measured (benchmarks/bench_precursor.py, docs/PERFORMANCE.md
# "Pruned phase 1"): the same top 8 as the exhaustive run on 16 of 16 maps for 0.47x its
# image-steps; the ((2, 2048), (5, 128)) was 0.41x but changed the top 8 of 2 maps.
PRUNE_SCHEDULE: tuple[tuple[int, int], ...] = ((3, 2048), (5, 512), (7, 128))
# Adaptive pruning of phase 1 (core/pruning.py), the default: per shard, random live starts
# and the best after step 1 that run to the end first, and the relative margin on how far a
# start can still climb. Chosen on recorded losses of the digits model (docs/PERFORMANCE.md,
# "Adaptive pruning") and frozen before the full-MNIST model was checked.
ADAPTIVE_SAMPLE = 128
ADAPTIVE_LEADERS = 64
ADAPTIVE_MARGIN = 0.02
# A start whose slack (how far its bound lies above the bar) was below this fraction of the
# bar at the last cut gets its loss alone before its step: 63 % of those between 0.02 and
# 0.05 and 36 % between 0.05 and 0.1 were cut next. Changes the cost only, never a result
# (docs/PERFORMANCE.md, "Look before stepping").
ADAPTIVE_LOOK_FIRST = 0.05

# TensorFlow reads these once, when it is imported. oneDNN's kernels: TensorFlow turns them
# on by itself only on x86 CPUs with AVX-512 VNNI and newer; on an AVX2 CPU (many laptops,
# AMD EPYC) its own kernels ran the ascent 1.41x slower (docs/PERFORMANCE.md, "oneDNN on
# every x86 CPU"). A value the user set wins.
TENSORFLOW_ENV = {"TF_ENABLE_ONEDNN_OPTS": "1"}


def tensorflow_environment() -> None:
    """Set each of :data:`TENSORFLOW_ENV` that the environment does not set already. Call
    before TensorFlow is first imported in the process (later calls change nothing TensorFlow
    sees); the driver, every actor and :mod:`core.ascent` do."""
    for name, value in TENSORFLOW_ENV.items():
        os.environ.setdefault(name, value)
