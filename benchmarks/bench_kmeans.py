"""MiniBatchKMeans: the seed's settings against faster ones, and silhouette samples vs exact.

In one process and one run (machine noise hits every setting alike), for each K:
- the seed's ``n_init=500, max_iter=1000, batch_size=500`` (the baseline) and the candidate
  settings, each fitted ``--runs`` times with random_state 0, 1, …; reported: median wall
  seconds, median CPU seconds, median inertia, median passes over the data; the ratios
  are time(seed) / time(setting), wall and CPU (CPU is the robust one on a busy machine),
  and inertia(setting) / inertia(seed) − 1;
- then, on one fast fit at ``--silhouette-k``: the exact silhouette (every point) against
  ``--silhouette-repeats`` random samples of each size in ``--silhouette-sizes``.
Every fit runs on one thread (OMP_NUM_THREADS=1, as in a sweep's Ray task on one CPU)
unless ``--threads`` says otherwise.

    .venv/bin/python benchmarks/bench_kmeans.py --data mnist-5k --k 40,70,90 --runs 3
    .venv/bin/python benchmarks/bench_kmeans.py --data /usr/share/datasets/fashion-mnist --k 40,70,90 --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist-5k", help="data set (as dreamctl --data)")
    parser.add_argument("--k", default="40,70,90", help="K values, comma-separated")
    parser.add_argument("--runs", type=int, default=3, help="fits per (K, setting); medians are reported")
    parser.add_argument("--seed-runs", type=int, default=None, help="fits of the seed's setting (default --runs)")
    parser.add_argument("--samples", type=int, default=None, help="cluster a random subset of this many images")
    parser.add_argument("--candidates", default="1:500,3:500,10:500,3:1024",
                        help="n_init:batch_size pairs to compare with the seed's (max_iter 1000 for all)")
    parser.add_argument("--silhouette-k", type=int, default=70, help="K of the silhouette comparison (0 = skip)")
    parser.add_argument("--silhouette-sizes", default="1000,2000,5000,10000", help="sample sizes to compare with exact")
    parser.add_argument("--silhouette-repeats", type=int, default=5, help="samples per size")
    parser.add_argument("--threads", type=int, default=1, help="OpenMP / BLAS threads per fit")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw figures here")
    return parser.parse_args()


ARGS = parse_args()
os.environ["OMP_NUM_THREADS"] = str(ARGS.threads)  # before numpy / sklearn load their pools
os.environ["OPENBLAS_NUM_THREADS"] = str(ARGS.threads)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from core.data import load_dataset  # noqa: E402
from core.kmeans import SEED, KMeansSettings, fit_kmeans, pixel_matrix, silhouette  # noqa: E402


def median_fit(X, k: int, settings: KMeansSettings, runs: int) -> dict:
    fits = [fit_kmeans(X, k, KMeansSettings(settings.n_init, settings.max_iter, settings.batch_size, seed))
            for seed in range(runs)]
    return {
        "n_init": settings.n_init, "max_iter": settings.max_iter, "batch_size": settings.batch_size,
        "runs": runs,
        "wall_s": statistics.median(f.fit_seconds for f in fits),
        "cpu_s": statistics.median(f.fit_cpu_seconds for f in fits),
        "inertia": statistics.median(f.inertia for f in fits),
        "inertia_min": min(f.inertia for f in fits),
        "inertia_max": max(f.inertia for f in fits),
        "n_iter": statistics.median(f.n_iter for f in fits),
    }


def main() -> None:
    data = load_dataset(ARGS.data)
    images = np.concatenate([data.x_train, data.x_test])
    if ARGS.samples is not None and ARGS.samples < len(images):
        images = images[np.sort(np.random.default_rng(0).choice(len(images), ARGS.samples, replace=False))]
    X = pixel_matrix(images, "unit")
    ks = [int(k) for k in ARGS.k.split(",")]
    candidates = [KMeansSettings(int(a), 1000, int(b)) for a, b in (c.split(":") for c in ARGS.candidates.split(","))]
    print(f"data {data.name} ({data.checksum}): clustering {len(X):,} × {X.shape[1]} (pixels / 255), "
          f"{ARGS.threads} thread(s) per fit, {ARGS.runs} runs per setting (seed setting: {ARGS.seed_runs or ARGS.runs})",
          flush=True)
    results = {"data": data.identity(), "n_samples": len(X), "threads": ARGS.threads, "fits": [], "silhouette": []}
    started = time.perf_counter()
    results["loadavg_start"] = os.getloadavg()
    print("\n| K | n_init | batch | median wall s | median CPU s | median inertia | passes | wall seed/this | CPU seed/this | inertia vs seed |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for k in ks:
        base = median_fit(X, k, SEED, ARGS.seed_runs or ARGS.runs)
        rows = [base] + [median_fit(X, k, c, ARGS.runs) for c in candidates]
        for row in rows:
            row["k"] = k
            row["time_ratio"] = base["wall_s"] / row["wall_s"]
            row["cpu_ratio"] = base["cpu_s"] / row["cpu_s"]
            row["inertia_vs_seed"] = row["inertia"] / base["inertia"] - 1.0
            results["fits"].append(row)
            print(f"| {k} | {row['n_init']} | {row['batch_size']} | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | "
                  f"{row['inertia']:.6g} | {row['n_iter']:g} | {row['time_ratio']:.1f}× | {row['cpu_ratio']:.1f}× | "
                  f"{100 * row['inertia_vs_seed']:+.2f} % |",
                  flush=True)
    if ARGS.silhouette_k:
        fit = fit_kmeans(X, ARGS.silhouette_k, candidates[0] if candidates else SEED)
        exact = silhouette(X, fit.labels, None)
        print(f"\nsilhouette at K = {ARGS.silhouette_k}: exact {exact.mean:.4f} on {exact.sample_size:,} points "
              f"in {exact.seconds:.1f} s")
        print("\n| sample size | repeats | mean | std | mean − exact | seconds per sample |")
        print("|---|---|---|---|---|---|")
        results["silhouette"].append({"k": ARGS.silhouette_k, "sample_size": exact.sample_size, "repeats": 1,
                                      "mean": exact.mean, "std": 0.0, "seconds": exact.seconds, "exact": True})
        for size in (int(s) for s in ARGS.silhouette_sizes.split(",")):
            if size >= len(X):
                continue
            sampled = silhouette(X, fit.labels, size, ARGS.silhouette_repeats, seed=0)
            per_sample = sampled.seconds / sampled.repeats
            results["silhouette"].append({"k": ARGS.silhouette_k, "sample_size": size, "repeats": sampled.repeats,
                                          "mean": sampled.mean, "std": sampled.std, "seconds": per_sample,
                                          "exact": False})
            print(f"| {size:,} | {sampled.repeats} | {sampled.mean:.4f} | {sampled.std:.4f} | "
                  f"{sampled.mean - exact.mean:+.4f} | {per_sample:.2f} |", flush=True)
    results["loadavg_end"] = os.getloadavg()
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at start {results['loadavg_start'][0]:.2f}, "
          f"at end {results['loadavg_end'][0]:.2f} (1 min; {os.cpu_count()} CPUs)")
    if ARGS.json:
        ARGS.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
