"""Seconds per TensorFlow op over one call, from TensorFlow's profiler.

Shows where a compiled step's time goes and which kernel ran each op (oneDNN's
``_MklNative...`` or TensorFlow's own): ``benchmarks/bench_step.py`` and the ascent's tests.
"""

from __future__ import annotations

import collections
import glob
import tempfile
from typing import Callable


def op_seconds(run: Callable[[], object]) -> collections.Counter:
    """Run ``run()`` under the profiler; seconds per executed op, keyed "node name:kernel"."""
    import tensorflow as tf
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    seconds: collections.Counter = collections.Counter()
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        try:
            run()
        finally:
            tf.profiler.experimental.stop()
        space = xplane_pb2.XSpace()
        with open(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True)[0], "rb") as trace:
            space.ParseFromString(trace.read())
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if line.name.startswith("tf_Compute"):
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    if ":" in name and "::" not in name:  # ops are "node:kernel"; executor bookkeeping is not
                        seconds[name] += event.duration_ps / 1e12
    return seconds
