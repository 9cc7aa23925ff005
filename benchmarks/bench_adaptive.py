"""Phase 1 of whole maps with adaptive pruning: this tree's ``core/ascent.py`` against a git
revision's, or at several chunk sizes, and against the exhaustive 10 steps.

In one process, one TensorFlow thread (an actor), interleaved, --repeats times each: every
coarse pattern of the default grid for each map of --maps, ``Ascent.run_adaptive`` as the
precursor's phase 1 runs it (conv3 sliced, the job's defaults), once with this tree's
Ascent and once with REV's (its ``core/ascent.py`` loaded beside this one; the rest of
``core`` is this tree's), or with this tree's at each of --chunk-sizes, then ``run_maps``
for the exhaustive 10 steps. Prints the seconds (median), the image-steps taken and the
ratio to REV (to the default chunk size); checks that all give the same top 8 on every map.

    .venv/bin/python benchmarks/bench_adaptive.py --model models/cnn.keras --baseline HEAD~1 [--maps 56,69] [--repeats 3]
    .venv/bin/python benchmarks/bench_adaptive.py --model models/cnn.keras --chunk-sizes 16,32,64,128 --maps 69
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from core.defaults import tensorflow_environment  # noqa: E402

tensorflow_environment()

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from cluster.model_file import load_model  # noqa: E402
from core.defaults import CHUNK_SIZE  # noqa: E402
from core.errors import BadInput  # noqa: E402
from core.ascent import Ascent  # noqa: E402
from core.params import parse_ints, parse_selection  # noqa: E402
from core.patterns import precursor_images  # noqa: E402
from jobs.precursor import PrecursorJob  # noqa: E402


def ascent_of(revision: str):
    """The Ascent class of ``revision``'s core/ascent.py."""
    shown = subprocess.run(["git", "-C", str(ROOT), "show", f"{revision}:core/ascent.py"], capture_output=True, text=True)
    if shown.returncode:
        raise BadInput(f"no core/ascent.py at revision {revision!r}: {shown.stderr.strip().splitlines()[-1]}")
    source = shown.stdout
    with tempfile.TemporaryDirectory(prefix="bench-adaptive-") as folder:
        path = Path(folder) / "ascent_baseline.py"
        path.write_text(source)
        spec = importlib.util.spec_from_file_location("ascent_baseline", path)
        module = sys.modules["ascent_baseline"] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.Ascent


def _argument(parse):
    """An argparse type from a parser of core.params: its ValueError becomes argparse's
    one-line usage error (exit 2)."""
    def parsed(text: str):
        try:
            return parse(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
    return parsed


def _positive_ints(text: str) -> tuple[int, ...]:
    """'16,32,64' -> (16, 32, 64), each ≥ 1."""
    values = parse_ints(text)
    if min(values) < 1:
        raise ValueError(f"expected integers ≥ 1, got {text!r}")
    return values


def _count(text: str) -> int:
    """'3' -> 3, ≥ 1."""
    values = _positive_ints(text)
    if len(values) != 1:
        raise ValueError(f"expected one integer, got {text!r}")
    return values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/cnn.keras")
    against = parser.add_mutually_exclusive_group(required=True)
    against.add_argument("--baseline", help="a git revision, e.g. HEAD~1")
    against.add_argument("--chunk-sizes", type=_argument(_positive_ints),
                         help=f"comma-separated, e.g. 16,32,64,128; the ratio is to {CHUNK_SIZE}, the default")
    parser.add_argument("--maps", type=_argument(lambda text: parse_selection(text, 128)), default="56,69",
                        help="conv3 maps: 56,69, 56-63 or all")
    parser.add_argument("--repeats", type=_argument(_count), default=3)
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    job = PrecursorJob()
    try:
        model, _ = load_model(args.model)
        baseline = ascent_of(args.baseline) if args.baseline else None
    except BadInput as error:
        parser.error(str(error))
    maps = args.maps
    patterns = np.arange(len(job.levels) ** (job.grid ** 2))
    images = precursor_images(patterns, job.grid, job.levels)
    if args.baseline:
        base_name = args.baseline
        ascents = {"this tree": Ascent(model, [job.layer]), base_name: baseline(model, [job.layer])}
        measured = ascents["this tree"]  # the one that also runs the exhaustive phase 1
    else:
        sizes = sorted(set(args.chunk_sizes) | {CHUNK_SIZE})
        base_name = f"chunk {CHUNK_SIZE}"
        ascents = {f"chunk {size}": Ascent(model, [job.layer], chunk_size=size) for size in sizes}
        measured = ascents[base_name]

    def adaptive(ascent):
        results = {}
        for map_id in maps:
            results[map_id] = ascent.run_adaptive(images, job.layer, np.full(len(images), map_id), job.test_epochs,
                                                  top=job.top, seed=(map_id, 0), slice_map=True)
        return results

    def exhaustive(ascent):
        for map_id in maps:
            ascent.run_maps(images, job.layer, np.full(len(images), map_id), job.test_epochs, slice_map=True)

    seconds: dict[str, list[float]] = {name: [] for name in [*ascents, "exhaustive"]}
    outcomes = {}
    for name, ascent in ascents.items():  # warm-up: traces
        outcomes[name] = adaptive(ascent)
    for map_id in maps:
        tops = {name: tuple(outcome[map_id].ranking()[: job.top]) for name, outcome in outcomes.items()}
        assert len(set(tops.values())) == 1, f"map {map_id}: the top {job.top} differ: {tops}"
    steps = {name: sum(r.image_steps for r in outcome.values()) for name, outcome in outcomes.items()}
    exhaustive(measured)
    for repeat in range(args.repeats):
        for name, ascent in ascents.items():
            start = time.process_time()
            adaptive(ascent)
            seconds[name].append(time.process_time() - start)
        start = time.process_time()
        exhaustive(measured)
        seconds["exhaustive"].append(time.process_time() - start)
        print(f"  repeat {repeat + 1}: " + ", ".join(f"{name} {s[-1]:.2f} s" for name, s in seconds.items()), flush=True)
    n_live = sum(int(np.count_nonzero(measured.losses(images, measured.map_objective(
        job.layer, np.full(len(images), m))))) for m in maps)
    steps["exhaustive"] = n_live * job.test_epochs
    base = statistics.median(seconds[base_name])
    print(f"maps {','.join(map(str, maps))}: {len(images):,} patterns x {job.test_epochs} steps each, 1 TF thread, CPU seconds, "
          f"median of {args.repeats}; the same top {job.top} on every map")
    for name, timings in seconds.items():
        median = statistics.median(timings)
        print(f"  {name:<12} {median:7.2f} s  {steps[name]:>10,} image-steps taken  {steps[name] / median:7,.0f}/s  "
              f"{base / median:5.2f}x {base_name}")


if __name__ == "__main__":
    main()
