"""Pruning rules replayed on recorded phase-1 losses (benchmarks/record_histories.py).

For every map recorded in HISTORIES, each shard of --patterns-per-shard starts is pruned as
the job prunes it, from the exhaustive losses: the adaptive rule (core.pruning.replay, the
same decisions as Ascent.run_adaptive with the same seed: a survivor's losses are the
exhaustive ones, bit for bit) for each --config, and fixed schedules (--schedule). Per rule:
maps whose top --top (ranked as phase 2 takes them: step reached, then loss, then pattern)
equals the exhaustive top, the worst overlap, and the phase-1 image-steps against the
exhaustive run's. With --seeds S the adaptive rule is replayed with S different random
samples per shard (seed offsets 0..S-1; offset 0 is what the job draws), to see how often
an unlucky sample would cost a map its top.

    .venv/bin/python benchmarks/replay_pruning.py /work/perf/histories/cnn-5k \\
        --config 32:64:0.05 --config 64:64:0.03 --schedule 3:2048,5:512,7:128 [--seeds 5] [--per-map]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.defaults import ADAPTIVE_LEADERS, ADAPTIVE_MARGIN, ADAPTIVE_SAMPLE  # noqa: E402
from core.pruning import replay  # noqa: E402


def load(folder: Path) -> dict[int, np.ndarray]:
    return {int(path.stem[3:]): np.load(path) for path in sorted(folder.glob("map*.npy")) if ".tmp" not in path.name}


def top_set(reached: np.ndarray, losses: np.ndarray, top: int) -> frozenset:
    return frozenset(np.lexsort((np.arange(len(losses)), -losses, -reached))[:top].tolist())


def replay_schedule(history: np.ndarray, schedule) -> tuple[np.ndarray, int]:
    """A fixed schedule on one shard (Ascent.run_pruned): (step reached, image-steps)."""
    epochs = history.shape[0] - 1
    live = np.flatnonzero(history[0] != 0)
    reached = np.full(history.shape[1], epochs, np.int32)
    active, done, steps = live, 0, 0
    for stop, keep in [*[(s, k) for s, k in schedule if s < epochs], (epochs, None)]:
        steps += len(active) * (stop - done)
        reached[active] = stop
        if keep is not None:
            active = active[np.lexsort((active, -history[stop, active]))][:keep]
        done = stop
    return reached, steps


def evaluate(histories: dict[int, np.ndarray], rule, shard: int, top: int):
    """(maps with the exhaustive top, per-map overlap, image-steps, exhaustive image-steps)."""
    same, overlaps, steps, exhaustive = 0, {}, 0, 0
    for map_id, history in histories.items():
        epochs, n = history.shape[0] - 1, history.shape[1]
        reached = np.empty(n, np.int32)
        for start in range(0, n, shard):
            index = np.arange(start, min(start + shard, n))
            shard_reached, shard_steps = rule(map_id, start, history[:, index])
            reached[index] = shard_reached
            steps += shard_steps
        losses = history[reached, np.arange(n)]
        exact = top_set(np.full(n, epochs), history[epochs], top)
        overlaps[map_id] = len(top_set(reached, losses, top) & exact)
        same += overlaps[map_id] == top
        exhaustive += int(np.sum(history[0] != 0)) * epochs
    return same, overlaps, steps, exhaustive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("histories", type=Path)
    parser.add_argument("--config", action="append", default=[],
                        help=f"sample:leaders:margin of the adaptive rule (default: "
                             f"{ADAPTIVE_SAMPLE}:{ADAPTIVE_LEADERS}:{ADAPTIVE_MARGIN:g}, the job's)")
    parser.add_argument("--schedule", action="append", default=[], help="a fixed schedule step:keep,...")
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--top", type=int, default=8)
    parser.add_argument("--patterns-per-shard", type=int, default=20_000, help="(4,096 for --schedule runs as the job cuts them)")
    parser.add_argument("--per-map", action="store_true", help="print every map's image-steps ratio and overlap")
    args = parser.parse_args()
    histories = load(args.histories)
    print(f"{len(histories)} maps from {args.histories}; shards of {args.patterns_per_shard:,}, top {args.top}")
    rules = []
    for text in args.config or [f"{ADAPTIVE_SAMPLE}:{ADAPTIVE_LEADERS}:{ADAPTIVE_MARGIN}"]:
        sample, leaders, margin = text.split(":")
        for offset in range(args.seeds):
            def rule(map_id, start, history, sample=int(sample), leaders=int(leaders), margin=float(margin), offset=offset):
                seed = [map_id, start] if offset == 0 else [map_id, start, 10_000 + offset]
                return replay(history, args.top, sample, leaders, margin, np.random.default_rng([*seed, map_id]))
            rules.append((f"adaptive {text}" + (f" seed+{offset}" if offset else ""), rule))
    for text in args.schedule:
        schedule = [tuple(int(v) for v in part.split(":")) for part in text.split(",")]
        rules.append((f"schedule {text}", lambda map_id, start, history, schedule=schedule: replay_schedule(history, schedule)))
    for name, rule in rules:
        same, overlaps, steps, exhaustive = evaluate(histories, rule, args.patterns_per_shard, args.top)
        missed = {m: o for m, o in overlaps.items() if o < args.top}
        print(f"{name:34s} top {args.top} identical on {same:3d}/{len(histories)} maps; image-steps {steps:,} = "
              f"{steps / exhaustive:.3f}x the exhaustive {exhaustive:,}" + (f"; missed (map: overlap) {missed}" if missed else ""),
              flush=True)
        if args.per_map:
            for map_id in sorted(histories):
                print(f"    map {map_id:3d}: overlap {overlaps[map_id]}/{args.top}")


if __name__ == "__main__":
    main()
