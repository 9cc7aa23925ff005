"""Phase 1 of one map as actors compute it: exhaustive vs pruned, shards of 4,096 vs the whole map.

One process with --threads TensorFlow threads (an actor of `--cpus-per-actor 1` has 1),
the job's own ``ScoresPhase.compute`` on every shard of the map in turn, after a warm-up
shard; per configuration the wall time of each of --repeats passes over the map. Pruned
cuts count starts per shard, so a whole-map shard cuts as deep as the schedule says map-wide,
while 4,096-pattern shards keep up to 5× as many starts.

    .venv/bin/python benchmarks/bench_shard_size.py [--model models/cnn.keras] [--threads 1] [--maps 69] [--repeats 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from cluster.model_file import load_model  # noqa: E402
from core.defaults import CHUNK_SIZE  # noqa: E402
from core.params import parse_selection  # noqa: E402
from jobs.base import ModelSession  # noqa: E402
from jobs.precursor import PrecursorJob, ScoresPhase  # noqa: E402

SHARD_SIZES = (4096, 3**9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/cnn.keras")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--maps", default="69")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    model, metadata = load_model(args.model)
    session = ModelSession(model, metadata, CHUNK_SIZE)
    for map_id in parse_selection(args.maps, 128):
        for shard_size in SHARD_SIZES:
            for exhaustive in (True, False):
                phase = ScoresPhase(PrecursorJob(maps=(map_id,), exhaustive=exhaustive, patterns_per_shard=shard_size))
                shards = phase.shards({})
                phase.compute(session, shards[0].payload)  # warm-up: tracing
                seconds = []
                for _ in range(args.repeats):
                    start = time.perf_counter()
                    for shard in shards:
                        phase.compute(session, shard.payload)
                    seconds.append(time.perf_counter() - start)
                label = f"map {map_id}, {len(shards)} shard(s) of <= {shard_size:,}, {'exhaustive' if exhaustive else 'pruned'}"
                print(f"{label:52s} median {statistics.median(seconds):6.1f} s  (runs: "
                      f"{', '.join(f'{s:.1f}' for s in seconds)})", flush=True)


if __name__ == "__main__":
    main()
