"""Phase 1 of the precursor through Ray: exhaustive vs pruned, actor layouts, chunk sizes.

Runs `dreamctl precursor` (--maps × 19,683 patterns, no phase 2) as a subprocess for each
configuration below, fresh each time (Ray start and model loading included), and reports
the median wall time of --repeats runs and patterns per second; ratios are to the first
configuration (the seed's exhaustive phase 1), measured in the same run. The repeats are
interleaved (every configuration once, then again), so machine noise hits all alike.

    .venv/bin/python benchmarks/bench_actors.py [--repeats 3] [--maps 0-1]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from core.params import parse_selection

TWO_ACTORS = ["--actors", "2", "--cpus-per-actor", "1"]
CONFIGURATIONS = [  # (label, extra options)
    ("exhaustive, 2 actors x 1 thread, chunk 256", ["--exhaustive", *TWO_ACTORS, "--chunk-size", "256"]),
    ("pruned, 2 actors x 1 thread, chunk 256", [*TWO_ACTORS, "--chunk-size", "256"]),
    ("pruned, 1 actor x 2 threads, chunk 256", ["--actors", "1", "--cpus-per-actor", "2", "--chunk-size", "256"]),
    ("pruned, 2 actors x 1 thread, chunk 512", [*TWO_ACTORS, "--chunk-size", "512"]),
    ("pruned, 2 actors x 1 thread, chunk 1024", [*TWO_ACTORS, "--chunk-size", "1024"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--maps", default="0-1")
    parser.add_argument("--model", default="models/cnn.keras")
    args = parser.parse_args()
    n_maps = len(parse_selection(args.maps, 128))
    dreamctl = str(Path(sys.executable).with_name("dreamctl"))
    seconds: dict[str, list[float]] = {label: [] for label, _ in CONFIGURATIONS}
    for _ in range(args.repeats):
        for label, options in CONFIGURATIONS:
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                subprocess.run([dreamctl, "precursor", "--maps", args.maps, "--full-epochs", "0", "--top", "1",
                                "--model", args.model, "--out", out, *options],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                seconds[label].append(time.perf_counter() - start)
    baseline = statistics.median(seconds[CONFIGURATIONS[0][0]])
    for label, runs in seconds.items():
        median = statistics.median(runs)
        print(f"{label:42s} median {median:7.1f} s  {n_maps * 19683 / median:8,.0f} patterns/s  "
              f"{baseline / median:5.2f}x  (runs: {', '.join(f'{s:.1f}' for s in runs)})")

if __name__ == "__main__":
    main()
