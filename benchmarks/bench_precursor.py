"""Phase 1 of the precursor: exhaustive vs pruned (successive halving), on whole maps.

For each map, all 19,683 coarse patterns in shards of 4,096 (as jobs/precursor.py cuts
them), 10 ascent steps; per map:
- exhaustive: today's phase 1 (``Ascent.run_maps``, skip_frozen), every step's loss recorded;
- pruned: ``Ascent.run_pruned`` with --schedule, per shard, conv3 sliced to the map;
- top-8 agreement: the same set of 8 pattern indices (pruned ranked by step reached, then
  loss, then pattern, as :meth:`core.ascent.PrunedResult.ranking`);
- the rank, among all of the map's starts, that the exhaustive top 8 held after 2, 3 and 5
  steps (how much room a cut has).
Other schedules are then evaluated exactly from the recorded exhaustive losses: the
survivors of a cut are bit-identical to the uninterrupted run (tests/core/test_ascent.py), so
the pruned outcome is a function of those losses; the real pruned run is checked against
this simulation.

Timing: a median of --repeats runs of one shard of 4,096 patterns on --timing-maps, the
variants interleaved so machine noise hits all alike; ratios are to the plain
``tf.function`` loop (one compiled step on the whole 4,096-image chunk, the whole 28×28
input, no skipping) measured in the same run with the same TensorFlow threads.

    .venv/bin/python benchmarks/bench_precursor.py [--model models/cnn.keras] [--threads 1] [--repeats 3]
        [--schedule 3:2048,5:512,7:128] [--maps 47,69] [--save losses.npz | --load losses.npz]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from core.ascent import LEARNING_RATE, PRUNE_SCHEDULE, RMS_EPSILON, Ascent, check_schedule  # noqa: E402
from core.patterns import precursor_images  # noqa: E402

GRID, LEVELS, EPOCHS, TOP, SHARD = 3, (0.2, 0.5, 0.8), 10, 8, 4096
N_PATTERNS = 3**9
CANDIDATES = (
    ((2, 2048), (5, 128)),
    ((2, 3072), (5, 512)),
    ((3, 2048), (5, 512)),
    ((3, 2048), (6, 256)),
    ((5, 1024),),
    ((5, 512),),
    ((2, 1024), (5, 128)),
    ((2, 1024), (5, 64)),
    ((2, 512), (5, 64)),
    ((2, 512), (5, 32)),
    ((2, 256), (5, 32)),
    ((3, 512), (5, 64)),
    ((2, 1024), (4, 256), (6, 64)),
    ((3, 1024), (5, 256)),
    ((3, 2048), (5, 384)),
    ((3, 2048), (5, 512), (7, 128)),
    ((2, 3072), (4, 1024), (6, 256)),
)


def parse_schedule(text: str) -> tuple[tuple[int, int], ...]:
    """'2:1024,5:128' -> ((2, 1024), (5, 128))."""
    return check_schedule([tuple(int(v) for v in part.split(":")) for part in text.split(",") if part])


def format_schedule(schedule) -> str:
    return ",".join(f"{step}:{keep}" for step, keep in schedule)


def model_path(path: str) -> Path:
    """The model file; trained with `dreamctl train` (≈ 30 s) when it does not exist."""
    path = Path(path)
    if not path.exists():
        print(f"no model at {path}: training one with dreamctl train", file=sys.stderr)
        dreamctl = Path(sys.executable).with_name("dreamctl")
        subprocess.run([str(dreamctl), "train", "--model", str(path)], check=True)
    return path


def simulate(history: np.ndarray, schedule, shard_of: np.ndarray, scale_keep: bool = False):
    """Pruned outcome from exhaustive losses history (EPOCHS + 1, n_patterns): per-start
    (step reached, loss at it) and the image-steps, cutting each shard on its own."""
    live = history[0] != 0
    reached = np.where(live, 0, EPOCHS)
    steps = 0
    for shard in np.unique(shard_of):
        active = np.flatnonzero(live & (shard_of == shard))
        size = int(np.sum(shard_of == shard))
        done = 0
        for stop, keep in [*[(s, k) for s, k in schedule if s < EPOCHS], (EPOCHS, None)]:
            steps += len(active) * (stop - done)
            reached[active] = stop
            if keep is not None:
                keep = -(-keep * size // N_PATTERNS) if scale_keep else keep
                active = active[np.lexsort((active, -history[stop][active]))][:keep]
            done = stop
    losses = history[reached, np.arange(history.shape[1])]
    return reached, losses, steps


def top_set(reached: np.ndarray, losses: np.ndarray) -> frozenset:
    order = np.lexsort((np.arange(len(losses)), -losses, -reached))
    return frozenset(order[:TOP].tolist())


def plain_loop(model, layer: str):
    """The straightforward phase 1: one tf.function step over a whole chunk, called EPOCHS times."""
    import keras

    features = keras.Model(model.inputs, model.get_layer(layer).output)

    @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.float32), tf.TensorSpec([], tf.int32)])
    def step(images, map_id):
        with tf.GradientTape() as tape:
            tape.watch(images)
            losses = tf.reduce_mean(tf.gather(features([images], training=False), map_id, axis=3), axis=[1, 2])
            total = tf.reduce_sum(losses)
        gradients = tape.gradient(total, images)
        rms = tf.sqrt(tf.reduce_mean(tf.square(gradients), axis=[1, 2, 3], keepdims=True))
        return images + LEARNING_RATE * gradients / (rms + RMS_EPSILON), losses

    def run(images: np.ndarray, map_id: int) -> np.ndarray:
        x = tf.constant(images[..., None])
        for _ in range(EPOCHS):
            x, _ = step(x, tf.constant(map_id, tf.int32))
        return step(x, tf.constant(map_id, tf.int32))[1].numpy()

    return run


def choose_maps(ascent: Ascent, n_maps: int) -> list[int]:
    """n_maps conv3 maps across activity: the 4 with the lowest share of live starts (on a
    sample of 1,024 patterns), the rest at evenly spaced quantiles of that share."""
    sample = precursor_images(np.arange(0, N_PATTERNS, N_PATTERNS // 1024)[:1024], GRID, LEVELS)
    share = np.array([np.mean(ascent.losses(sample, ascent.map_objective("conv3", np.full(1024, m))) > 0)
                      for m in range(128)])
    order = np.argsort(share, kind="stable")
    weakest = list(order[:4])
    rest = order[4:]
    picks = rest[np.linspace(0, len(rest) - 1, n_maps - 4).round().astype(int)]
    return sorted(int(m) for m in [*weakest, *picks])


def schedule_table(histories: dict[int, np.ndarray], schedules) -> None:
    """Print, per schedule, its image-steps vs exhaustive and how well its top 8 matches,
    simulated from the exhaustive losses of every map."""
    shard_of = np.arange(N_PATTERNS) // SHARD
    total_exh = sum(int(np.sum(h[0] != 0)) * EPOCHS for h in histories.values())
    print(f"\nschedules on {len(histories)} maps, simulated exactly from the exhaustive losses (cut per shard of "
          f"{SHARD:,}; 'scaled': keep x shard size / {N_PATTERNS:,}). top-8 overlap = patterns shared with the "
          "exhaustive top 8; best = maps whose best pattern is found; worst = lowest overlap on a map")
    for candidate in dict.fromkeys(tuple(c) for c in schedules):
        for scaled in (False, True):
            steps, same, overlap, best, worst = 0, 0, 0, 0, TOP
            for history in histories.values():
                sim_reached, sim_losses, sim_steps = simulate(history, candidate, shard_of, scaled)
                steps += sim_steps
                exact = top_set(np.full(N_PATTERNS, EPOCHS), history[EPOCHS])
                found = top_set(sim_reached, sim_losses)
                overlap += len(found & exact)
                worst = min(worst, len(found & exact))
                same += found == exact
                best += int(np.argmax(history[EPOCHS])) in found
            print(f"  {format_schedule(candidate):22s} {'scaled' if scaled else 'per shard':9s} image-steps "
                  f"{steps / total_exh:5.2f}x   same top 8 on {same:2d}/{len(histories)} maps, overlap "
                  f"{overlap}/{TOP * len(histories)}, worst {worst}/8, best found on {best}/{len(histories)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/cnn.keras")
    parser.add_argument("--maps", default="", help="comma-separated conv3 maps (default: 16 across activity)")
    parser.add_argument("--n-maps", type=int, default=16)
    parser.add_argument("--schedule", default=format_schedule(PRUNE_SCHEDULE), help="step:keep,... (per shard and map)")
    parser.add_argument("--threads", type=int, default=1, help="TensorFlow intra-op threads (an actor's default: 1)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--save", default="", help="save the recorded losses (npz) to PATH")
    parser.add_argument("--load", default="", help="only simulate schedules on losses saved with --save")
    parser.add_argument("--timing-maps", type=int, default=2, help="maps timed per shard, from the most to the least active")
    args = parser.parse_args()
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    schedule = parse_schedule(args.schedule)
    if args.load:
        saved = np.load(args.load)
        schedule_table(dict(zip(saved["maps"].tolist(), saved["histories"])), [*CANDIDATES, schedule])
        return

    from cluster.model_file import load_model

    model, _ = load_model(model_path(args.model))
    ascent = Ascent(model, ["conv3"])
    maps = [int(m) for m in args.maps.split(",")] if args.maps else choose_maps(ascent, args.n_maps)
    print(f"{os.cpu_count()} CPUs, TF threads {args.threads}; {len(maps)} maps x {N_PATTERNS:,} patterns x {EPOCHS} steps, "
          f"shards of {SHARD:,}; pruned schedule {format_schedule(schedule)} (per shard and map), conv3 sliced")

    patterns = np.arange(N_PATTERNS)
    shard_of = patterns // SHARD
    histories, rows = {}, []
    print(f"\n{'map':>4} {'live':>6} {'exh s':>7} {'pruned s':>8} {'exh steps':>10} {'pruned steps':>12} {'ratio':>6} "
          f"{'top-8':>5} {'sim':>4}  worst rank of the top 8 after 2/3/5 steps")
    for map_id in maps:
        history = np.empty((EPOCHS + 1, N_PATTERNS), np.float32)
        reached = np.empty(N_PATTERNS, np.int32)
        losses = np.empty(N_PATTERNS, np.float32)
        exh_seconds = pruned_seconds = 0.0
        pruned_steps = 0
        for start in range(0, N_PATTERNS, SHARD):
            index = patterns[start : start + SHARD]
            images = precursor_images(index, GRID, LEVELS)
            map_ids = np.full(len(index), map_id)
            t0 = time.perf_counter()
            full = ascent.run_maps(images, "conv3", map_ids, EPOCHS, record_epochs=range(EPOCHS + 1))
            t1 = time.perf_counter()
            pruned = ascent.run_pruned(images, "conv3", map_ids, EPOCHS, schedule, slice_map=True)
            t2 = time.perf_counter()
            exh_seconds, pruned_seconds = exh_seconds + t1 - t0, pruned_seconds + t2 - t1
            history[:, index] = full.history
            reached[index], losses[index] = pruned.epochs_reached, pruned.losses
            pruned_steps += pruned.image_steps
        histories[map_id] = history
        live = history[0] != 0
        exh_steps = int(live.sum()) * EPOCHS
        exact_top = top_set(np.full(N_PATTERNS, EPOCHS), history[EPOCHS])
        overlap = len(top_set(reached, losses) & exact_top)
        agree = overlap == TOP
        sim_reached, _, sim_steps = simulate(history, schedule, shard_of)
        sim_ok = np.array_equal(sim_reached, reached) and sim_steps == pruned_steps
        worst = []
        for step in (2, 3, 5):
            rank = np.empty(N_PATTERNS, int)
            rank[np.lexsort((patterns, -history[step]))] = np.arange(1, N_PATTERNS + 1)
            worst.append(int(rank[list(exact_top)].max()))
        rows.append((map_id, live.mean(), exh_seconds, pruned_seconds, exh_steps, pruned_steps, agree, worst))
        print(f"{map_id:4d} {live.mean():6.1%} {exh_seconds:7.1f} {pruned_seconds:8.1f} {exh_steps:10,} {pruned_steps:12,} "
              f"{pruned_steps / max(exh_steps, 1):6.2f} {overlap:3d}/8 {'ok' if sim_ok else 'NO':>4}  "
              + "/".join(map(str, worst)), flush=True)
    total_exh, total_pruned = sum(r[4] for r in rows), sum(r[5] for r in rows)
    print(f"all: {sum(r[2] for r in rows):.0f} s exhaustive, {sum(r[3] for r in rows):.0f} s pruned "
          f"({sum(r[3] for r in rows) / sum(r[2] for r in rows):.2f}x time); image-steps {total_exh:,} vs {total_pruned:,} "
          f"({total_pruned / total_exh:.2f}x); same top 8 on {sum(r[6] for r in rows)} of {len(rows)} maps; "
          f"worst ranks over these maps after 2/3/5 steps: {'/'.join(str(max(r[7][i] for r in rows)) for i in range(3))}")

    if args.save:
        np.savez_compressed(args.save, maps=np.array(maps), histories=np.stack([histories[m] for m in maps]))
    schedule_table(histories, [*CANDIDATES, schedule])

    by_activity = sorted(maps, key=lambda m: -np.mean(histories[m][0] != 0))
    timing_maps = [by_activity[int(i)] for i in np.linspace(0, len(maps) // 2, args.timing_maps).round()]
    plain = plain_loop(model, "conv3")
    variants = {
        "plain tf.function loop, chunk 4096 (baseline)": lambda images, m: plain(images, m),
        "batched ascent (run_maps), exhaustive": lambda images, m: ascent.run_maps(images, "conv3", np.full(len(images), m), EPOCHS),
        "batched ascent, conv3 sliced": lambda images, m: ascent.run_maps(images, "conv3", np.full(len(images), m), EPOCHS, slice_map=True),
        "pruned": lambda images, m: ascent.run_pruned(images, "conv3", np.full(len(images), m), EPOCHS, schedule),
        "pruned, conv3 sliced": lambda images, m: ascent.run_pruned(images, "conv3", np.full(len(images), m), EPOCHS, schedule, slice_map=True),
    }
    print(f"\none shard (patterns 4,096-8,191) x {EPOCHS} steps, median of {args.repeats} after a warm-up, TF threads {args.threads}:")
    images = precursor_images(np.arange(SHARD, 2 * SHARD), GRID, LEVELS)
    for map_id in timing_maps:
        seconds = {name: [] for name in variants}
        for name, run in variants.items():
            run(images[:64], map_id)  # warm-up: tracing (the plain loop's batch dimension is free)
        for _ in range(args.repeats):
            for name, run in variants.items():
                t0 = time.perf_counter()
                run(images, map_id)
                seconds[name].append(time.perf_counter() - t0)
        base = statistics.median(seconds["plain tf.function loop, chunk 4096 (baseline)"])
        live = np.mean(histories[map_id][0, SHARD : 2 * SHARD] != 0)
        for name in variants:
            median = statistics.median(seconds[name])
            print(f"  map {map_id:3d} ({live:4.0%} live)  {name:48s} {median:7.2f} s  {base / median:5.2f}x")


if __name__ == "__main__":
    main()
