"""Record every start's loss after each phase-1 step, for every map: the data to design and
check pruning rules on.

For each conv3 map, all coarse patterns of the default grid in shards of --patterns-per-shard
(as jobs/precursor.py cuts them), --test-epochs steps, conv3 sliced to the map, exactly the
arithmetic of an exhaustive phase 1 (``Ascent.run_maps`` with ``slice_map=True``; the
survivors of a pruned run are bit-identical to it). One file per map,
``OUT/map0056.npy``: float32 (test_epochs + 1, n_patterns), row s = the loss after s steps
(row 0 = 0 marks a frozen start). A map whose file exists is skipped, so an interrupted
recording resumes; run one process per core with ``--worker k/K``.

    nice -n 10 .venv/bin/python benchmarks/record_histories.py --model M --out DIR --worker 0/2 &
    nice -n 10 .venv/bin/python benchmarks/record_histories.py --model M --out DIR --worker 1/2
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from core.defaults import CHUNK_SIZE, tensorflow_environment  # noqa: E402

tensorflow_environment()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cluster.model_file import load_model  # noqa: E402
from core.ascent import Ascent  # noqa: E402
from core.params import parse_selection  # noqa: E402
from jobs.precursor import PrecursorJob  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--maps", default="all", help="all, or maps in the order to record them: 39,47,0-127")
    parser.add_argument("--worker", default="0/1", help="k/K: this process takes maps k, k+K, ...")
    parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE)
    args = parser.parse_args()
    k, n_workers = (int(v) for v in args.worker.split("/"))
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    job = PrecursorJob()
    model, _ = load_model(args.model)
    ascent = Ascent(model, [job.layer], args.chunk_size)
    args.out.mkdir(parents=True, exist_ok=True)
    ordered = [m for part in args.maps.split(",") for m in parse_selection(part, 128)]
    maps = list(dict.fromkeys(ordered))[k::n_workers]
    from core.patterns import precursor_images

    for map_id in maps:
        path = args.out / f"map{map_id:04d}.npy"
        if path.exists():
            continue
        start_time = time.perf_counter()
        history = np.empty((job.test_epochs + 1, job.n_patterns), np.float32)
        for start in range(0, job.n_patterns, job.patterns_per_shard):
            patterns = np.arange(start, min(start + job.patterns_per_shard, job.n_patterns))
            images = precursor_images(patterns, job.grid, job.levels)
            result = ascent.run_maps(images, job.layer, np.full(len(patterns), map_id), job.test_epochs,
                                     job.learning_rate, record_epochs=range(job.test_epochs + 1), slice_map=True)
            history[:, patterns] = result.history
        temporary = path.with_suffix(".tmp.npy")
        np.save(temporary, history)
        os.replace(temporary, path)
        print(f"map {map_id}: {np.mean(history[0] != 0):.1%} live, {time.perf_counter() - start_time:.0f} s", flush=True)


if __name__ == "__main__":
    main()
