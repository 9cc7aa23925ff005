"""Phase-1 image-steps per second of one actor in a real `dreamctl precursor` run, beside the
machine's single-thread sgemm peak measured in the same run: the fraction of the "roofline".

For each variant (an environment: e.g. oneDNN restricted to AVX2 to emulate an AVX2-only
CPU), --repeats times, interleaved:

1. numpy's sgemm on one thread (threadpoolctl), in a fresh process with the variant's
   environment (OPENBLAS_CORETYPE=Haswell makes OpenBLAS use its AVX2 kernel): GFLOP per
   CPU-second (process time: on a shared machine wall time counts other processes' turns),
   best size of 1024 and 2048, median of 5 timings each;
2. ``dreamctl precursor --maps MAPS --full-epochs 0 --actors 1 --cpus-per-actor 1`` (one
   actor, one TensorFlow thread) in a fresh folder, with the variant's environment; from the
   run's commit records: the phase-1 image-steps and the actor's CPU and wall seconds per
   shard (the run store records both), all shards and without the first (which traces);
3. sgemm again.

"Phase 1" counts the image-steps the starts took; "all its arithmetic" adds what the
pruning computed besides (steps computed for starts a cut then dropped, and forward passes
for losses alone at half a step each; recorded by the job since 2026-12-02): the first is
the job's speed, the second how close its arithmetic runs to the machine's.

The ceiling is sgemm FLOP/s ÷ (2 × multiply-adds of one image-step). Multiply-adds are
counted from the model's layer shapes: the forward pass of every convolution up to conv3
(conv3 for one map, as phase 1 slices it) plus the gradient to each one's input (the same
count again; no weight gradients), either on the 26×26 pixels the step reads ("as computed")
or on the model's 28×28 input ("issue's count", ≈ 4.9 M; issue 22).

    .venv/bin/python benchmarks/bench_roofline.py --model models/cnn.keras --maps 56,69 --repeats 3 \\
        --variant native= --variant "avx2=ONEDNN_MAX_CPU_ISA=AVX2 OPENBLAS_CORETYPE=Haswell" [-- --exhaustive]

With ``--baseline-dreamctl PATH`` each variant also runs another tree's ``dreamctl`` (e.g. a
``git worktree`` of an older commit with a virtualenv of its own), alternating with this
tree's in every repeat, and the ratio of the two medians is printed: the comparison within
one run that a shared machine needs. A worktree can borrow this tree's packages:

    git worktree add /tmp/base HEAD~1 && python3.11 -m venv /tmp/base/.venv
    printf '/tmp/base\\n%s\\n' "$PWD/.venv/lib/python3.11/site-packages" \\
        > /tmp/base/.venv/lib/python3.11/site-packages/base.pth
    sed "s#$PWD/.venv#/tmp/base/.venv#" .venv/bin/dreamctl > /tmp/base/.venv/bin/dreamctl && chmod +x $_
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SGEMM = r"""
import json, time, numpy as np
from threadpoolctl import threadpool_info, threadpool_limits
best = 0.0
with threadpool_limits(1):
    for n in (1024, 2048):
        a, b = np.random.rand(n, n).astype(np.float32), np.random.rand(n, n).astype(np.float32)
        a @ b
        timings = []
        for _ in range(5):
            start = time.process_time(); a @ b; timings.append(time.process_time() - start)
        best = max(best, 2 * n**3 / sorted(timings)[2] / 1e9)
kernels = sorted({str(i.get("architecture")) for i in threadpool_info() if i.get("internal_api") == "openblas"})
print(json.dumps({"gflops": best, "kernel": ",".join(kernels)}))
"""


def sgemm(env: dict) -> dict:
    done = subprocess.run([sys.executable, "-c", SGEMM], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def multiply_adds(model_path: str) -> dict[str, int]:
    """Multiply-adds of one phase-1 image-step (conv3 sliced to one map), counted from the
    layer shapes on the pixels the step reads and on the model's full input."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    from cluster.model_file import load_model
    from core.ascent import Ascent

    model, _ = load_model(model_path)
    extent = Ascent(model, ["conv3"]).input_extent
    counts = {}
    for name, size in (("as computed", extent), ("issue's count", int(model.input_shape[1]))):
        side, channels, total = size, 1, 0
        for layer in model.layers[: model.layers.index(model.get_layer("conv3")) + 1]:
            config = layer.get_config()
            if isinstance(layer, keras.layers.Conv2D):
                (kh, kw), maps = config["kernel_size"], config["filters"]
                side = side - kh + 1
                total += side * side * (1 if layer.name == "conv3" else maps) * kh * kw * channels
                channels = maps
            elif isinstance(layer, keras.layers.MaxPooling2D):
                side = (side - config["pool_size"][0]) // config["strides"][0] + 1
        counts[name] = 2 * total  # forward + gradient to the input
    return counts


def precursor(env: dict, dreamctl: str, model: str, maps: str, extra: list[str]) -> dict:
    """One real run; per-shard image-steps, CPU and wall seconds from its commit records."""
    from cluster.store import finished_run

    with tempfile.TemporaryDirectory(prefix="roofline-") as out:
        command = [dreamctl, "precursor", "--maps", maps, "--full-epochs", "0",
                   "--actors", "1", "--cpus-per-actor", "1", "--model", model, "--out", out, "--address", "local", *extra]
        start = time.perf_counter()
        subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        run = finished_run(out, "precursor")
        records = sorted((part.record for part in run.parts("scores")), key=lambda record: record["shard_id"])  # submission order
    steps = [int(r["image_steps"]) for r in records]
    cpu = [float(r["cpu_seconds"]) for r in records]
    seconds = [float(r["seconds"]) for r in records]
    # all the arithmetic in image-steps: a loss pass is a forward pass, half of a step's multiply-adds
    arithmetic = sum(steps) + sum(r.get("discarded_steps", 0) + r.get("loss_passes", 0) / 2 for r in records)
    return {"shards": len(records), "image_steps": sum(steps), "arithmetic": arithmetic, "cpu": sum(cpu), "seconds": sum(seconds),
            "steady_steps": sum(steps[1:]), "steady_cpu": sum(cpu[1:]), "steady_seconds": sum(seconds[1:]),
            "command_seconds": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/cnn.keras")
    parser.add_argument("--maps", default="56,69")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[],
                        help="NAME=KEY=VALUE KEY=VALUE ...: an environment to run in (default: native=)")
    parser.add_argument("--baseline-dreamctl", metavar="PATH",
                        help="another tree's dreamctl, run beside this one's in every repeat and variant")
    parser.add_argument("extra", nargs="*", help="more dreamctl precursor options, after --")
    args = parser.parse_args()
    programs = {"": str(Path(sys.executable).with_name("dreamctl"))}
    if args.baseline_dreamctl:
        if not os.access(args.baseline_dreamctl, os.X_OK) or os.path.isdir(args.baseline_dreamctl):
            parser.error(f"--baseline-dreamctl: {args.baseline_dreamctl} is not an executable file")
        programs["baseline"] = args.baseline_dreamctl
    variants = {}
    for spec in args.variant or ["native="]:
        name, _, settings = spec.partition("=")
        for program, dreamctl in programs.items():
            label = f"{name} {program}".strip()
            variants[label] = (dreamctl, dict(item.split("=", 1) for item in settings.split()))
    counts = multiply_adds(args.model)
    computed, issue = counts["as computed"], counts["issue's count"]
    print(f"multiply-adds per image-step: {computed:,} as computed (26x26 pixels), {issue:,} by the issue's count "
          "(28x28 input)")
    print(f"{os.cpu_count()} CPUs; maps {args.maps}; extra options: {' '.join(args.extra) or '(none: the defaults)'}")
    results: dict[str, list[dict]] = {name: [] for name in variants}
    for repeat in range(args.repeats):
        for name, (dreamctl, settings) in variants.items():
            env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **settings}
            before = sgemm(env)
            load_before = os.getloadavg()[0]
            run = precursor(env, dreamctl, args.model, args.maps, args.extra)
            after = sgemm(env)
            run.update(gflops=statistics.median([before["gflops"], after["gflops"]]), kernel=before["kernel"],
                       load=(load_before + os.getloadavg()[0]) / 2)
            results[name].append(run)
            print(f"  {repeat + 1}/{args.repeats} {name:12s} sgemm {run['gflops']:6.1f} GFLOP/s ({run['kernel']}); "
                  f"{run['image_steps']:,} image-steps in {run['shards']} shards, {run['cpu']:.1f} CPU s, "
                  f"{run['seconds']:.1f} s; {run['image_steps'] / run['cpu']:,.0f}/CPU-s, "
                  f"without the first shard {run['steady_steps'] / run['steady_cpu']:,.0f}/CPU-s; "
                  f"load {run['load']:.1f}", flush=True)
    print("\nmedians (per core: one actor, one TensorFlow thread); fraction = image-steps/s ÷ ceiling")
    for name, runs in results.items():
        gflops = statistics.median(r["gflops"] for r in runs)
        rate_cpu = statistics.median(r["image_steps"] / r["cpu"] for r in runs)
        rate_wall = statistics.median(r["image_steps"] / r["seconds"] for r in runs)
        steady = statistics.median(r["steady_steps"] / r["steady_cpu"] for r in runs)
        arithmetic = statistics.median(r["arithmetic"] / r["cpu"] for r in runs)
        for label, macs in counts.items():
            ceiling = gflops * 1e9 / (2 * macs)
            print(f"  {name:12s} {label:13s}: sgemm {gflops:6.1f} GFLOP/s, ceiling {ceiling:7,.0f} image-steps/s; "
                  f"phase 1 {rate_cpu:6,.0f}/CPU-s = {rate_cpu / ceiling:.2f} ({rate_wall:6,.0f}/wall-s = "
                  f"{rate_wall / ceiling:.2f}; without the first shard {steady:6,.0f}/CPU-s = {steady / ceiling:.2f}); "
                  f"all its arithmetic {arithmetic:6,.0f}/CPU-s = {arithmetic / ceiling:.2f}; "
                  f"load {statistics.median(r['load'] for r in runs):.1f}")
    if args.baseline_dreamctl:
        print(f"\nthis tree against {args.baseline_dreamctl}: phase-1 image-steps per CPU-s, ratio of the medians "
              "(per repeat)")
        for name in (label for label in variants if not label.endswith(" baseline")):
            ours, theirs = ([r["image_steps"] / r["cpu"] for r in results[label]] for label in (name, f"{name} baseline"))
            paired = " / ".join(f"{a / b:.3f}" for a, b in zip(ours, theirs))
            print(f"  {name:12s} {statistics.median(ours) / statistics.median(theirs):.3f}x ({paired})")


if __name__ == "__main__":
    main()
