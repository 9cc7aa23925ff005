"""What autograph costs the ascent's tracing: the ascent's functions as they are (autograph
off) against the same with autograph on, the way every release before it traced them.

Each measurement runs in a fresh process (autograph caches what it converts per process,
as an actor would), alternating the two, ``--repeats`` times; one TensorFlow thread. A
process runs phase 1 of the precursor (``run_adaptive``, 10 steps) on ``--starts`` patterns
twice, for two maps: the first call traces, the second reuses the traces, so "tracing" is
their difference in CPU seconds. It also counts the files the process left in its $TMPDIR
(autograph's converted modules; Ray's killed workers never remove them).

    .venv/bin/python benchmarks/bench_tracing.py --model models/cnn.keras --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

ONE = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np, tensorflow as tf
from functools import partial
tf.config.threading.set_intra_op_parallelism_threads(1); tf.config.threading.set_inter_op_parallelism_threads(1)
import core.ascent
from cluster.model_file import load_model
from core.patterns import precursor_images
if sys.argv[3] == "on":
    core.ascent._graph_function = partial(tf.function, autograph=True)
model, _ = load_model(sys.argv[2])
images = precursor_images(np.arange(int(sys.argv[4])), 3, (0.2, 0.5, 0.8))
ascent = core.ascent.Ascent(model, ["conv3"])
seconds = []
for map_id in (56, 69):
    start = time.process_time()
    ascent.run_adaptive(images, "conv3", np.full(len(images), map_id), 10, top=8, seed=(map_id, 0), slice_map=True)
    seconds.append(time.process_time() - start)
print(json.dumps({"first": seconds[0], "second": seconds[1], "files": len(os.listdir(os.environ["TMPDIR"]))}))
sys.stdout.flush()
os._exit(0)  # as Ray ends a worker: no exit handlers
"""


def measure(model: str, autograph: str, starts: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-tracing-") as folder:
        env = {**os.environ, "TMPDIR": folder, "TF_CPP_MIN_LOG_LEVEL": "2"}
        done = subprocess.run([sys.executable, "-c", ONE, str(ROOT), model, autograph, str(starts)], env=env,
                              capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--starts", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    found: dict[str, list[dict]] = {"off": [], "on": []}
    for repeat in range(args.repeats):
        for autograph in ("off", "on"):
            result = measure(args.model, autograph, args.starts)
            found[autograph].append(result)
            print(f"{repeat + 1}/{args.repeats} autograph {autograph:3}: first call {result['first']:.2f} CPU s, "
                  f"second {result['second']:.2f}, tracing {result['first'] - result['second']:.2f}; "
                  f"{result['files']} files left in $TMPDIR", flush=True)
    tracing = {key: statistics.median(r["first"] - r["second"] for r in runs) for key, runs in found.items()}
    second = {key: statistics.median(r["second"] for r in runs) for key, runs in found.items()}
    print(f"medians: tracing {tracing['off']:.2f} CPU s without autograph, {tracing['on']:.2f} with "
          f"({tracing['on'] / tracing['off']:.2f}x); traced call {second['off']:.2f} against {second['on']:.2f} CPU s "
          f"({second['on'] / second['off']:.2f}x)")


if __name__ == "__main__":
    main()
