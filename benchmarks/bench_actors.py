"""How to split 2 CPUs: phase 1 of the precursor through Ray with different actor layouts.

Runs `dreamctl precursor` (--maps × 19,683 patterns × 10 epochs, no phase 2) as a
subprocess for each layout, --repeats times, fresh each time, and reports the median wall
time and patterns per second; ratios are to the first layout, measured in the same run.

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

LAYOUTS = [  # (label, extra options)
    ("1 actor x 2 threads", ["--actors", "1", "--cpus-per-actor", "2"]),
    ("2 actors x 1 thread", ["--actors", "2", "--cpus-per-actor", "1"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--maps", default="0-1")
    parser.add_argument("--model", default="models/cnn.keras")
    args = parser.parse_args()
    n_maps = len(parse_selection(args.maps, 128))
    dreamctl = str(Path(sys.executable).with_name("dreamctl"))
    baseline = None
    for label, options in LAYOUTS:
        seconds = []
        for _ in range(args.repeats):
            with tempfile.TemporaryDirectory() as out:
                start = time.perf_counter()
                subprocess.run([dreamctl, "precursor", "--maps", args.maps, "--full-epochs", "0", "--top", "1",
                                "--model", args.model, "--out", out, *options],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                seconds.append(time.perf_counter() - start)
        median = statistics.median(seconds)
        baseline = baseline or median
        print(f"{label:34s} median {median:7.1f} s  {n_maps * 19683 / median:8,.0f} patterns/s  "
              f"{baseline / median:5.2f}x  (runs: {', '.join(f'{s:.1f}' for s in seconds)})")


if __name__ == "__main__":
    main()
