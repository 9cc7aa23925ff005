"""``dreamctl experiment clusters``: the seed's comparison of the MLP on pixels with MLPs
on cluster-distance features (algorithms.md §6), one Ray task per configuration."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import Address, Fresh, Out, data_option, describe_ray, err, out
from cli.kmeans import check_ks, check_scale
from cli.mlp import (DEFAULTS, ClusterBatch, ClusterMaxIter, ClusterNInit, ClusterScale, Dtype, EvalEvery, Epochs, FitOn,
                     Hidden, InitRange, KMeansSeed, LearningRate, LrDecrease, MlpBatchSize, Momentum, Seed, check_fit_on,
                     fmt, mlp_settings, n_clustered)
from cli.options import parse_floats, parse_int_range
from core.errors import BadInput
from core.kmeans import FAST, KMeansSettings

app = typer.Typer(name="experiment", help="Experiments that compare several training runs.", no_args_is_help=True)


def parse_targets(text: str) -> tuple[float, ...] | None:
    """'auto' → None; '0.974,0.9773,0.978' → sorted accuracies in (0, 1]."""
    if text.strip().lower() == "auto":
        return None
    targets = tuple(sorted(set(parse_floats(text, "--targets"))))
    bad = [t for t in targets if not 0 < t <= 1]
    if bad:
        raise BadInput(f"--targets: {bad[0]} is not an accuracy in (0, 1]")
    return targets


def seconds(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.1f}"


def times(value: float) -> str:
    return "—" if math.isnan(value) else f"{value:.2f}×"


def clusters(
    ctx: typer.Context,
    k: Annotated[str, typer.Option("--k", help="Cluster counts to compare with the reference: a list 40,70,90 or start:stop:step.")] = "40,70,90",
    targets: Annotated[str, typer.Option(help="Test accuracies to reach, comma-separated (the seed's on MNIST: 0.974,0.9773,0.978), or auto: the best test accuracy of the reference and of the best clustered run, each also minus 0.5 points.")] = "auto",
    epochs: Epochs = DEFAULTS.epochs,
    hidden: Hidden = ",".join(map(str, DEFAULTS.hidden)),
    lambda2: Annotated[float, typer.Option("--lambda2", min=0.0, help="L2 coefficient of the reference (784 inputs); the K-input nets get lambda2·K/784 (the seed's rule).", rich_help_panel="MLP")] = DEFAULTS.lambda2,
    learning_rate: LearningRate = DEFAULTS.learning_rate,
    lr_decrease: LrDecrease = DEFAULTS.lr_decrease,
    momentum: Momentum = DEFAULTS.momentum,
    batch_size: MlpBatchSize = DEFAULTS.batch_size,
    init_range: InitRange = DEFAULTS.init_range,
    eval_every: EvalEvery = DEFAULTS.eval_every,
    seed: Seed = DEFAULTS.seed,
    dtype: Dtype = DEFAULTS.dtype,
    n_init: ClusterNInit = FAST.n_init,
    max_iter: ClusterMaxIter = FAST.max_iter,
    kmeans_batch_size: ClusterBatch = FAST.batch_size,
    kmeans_seed: KMeansSeed = FAST.seed,
    scale: ClusterScale = "unit",
    fit_on: FitOn = "all",
    out_dir: Out = Path("results"),
    fresh: Fresh = False,
    address: Address = None,
) -> None:
    """Train the reference MLP (pixels) and one MLP per K (cluster distances), one Ray task
    each; compare epochs and CPU seconds to reach given test accuracies and the best test
    accuracy, relative to the reference (Parquet + comparison.png)."""
    from cluster.progress import JobProgress
    from cluster.runner import WorkerOptions, run_job
    from cluster.runtime import ray_session
    from core.data import load_dataset
    from jobs.mlp import ClustersExperiment

    ks = parse_int_range(k, "--k")
    target_values = parse_targets(targets)
    settings = mlp_settings(hidden=hidden, lambda2=lambda2, epochs=epochs, learning_rate=learning_rate,
                            lr_decrease=lr_decrease, momentum=momentum, batch_size=batch_size, init_range=init_range,
                            eval_every=eval_every, seed=seed, dtype=dtype, scale_lambda2=True)
    check_scale(scale)
    check_fit_on(fit_on)
    data = load_dataset(data_option(ctx))
    check_ks(ks, n_clustered(data, fit_on), "--k")
    job = ClustersExperiment(ks=ks, mlp=settings, kmeans=KMeansSettings(n_init, max_iter, kmeans_batch_size, kmeans_seed),
                             scale=scale, fit_on=fit_on, targets=target_values, dataset=data)
    err.print(f"data {data.name}: {len(data.x_train):,} train / {len(data.x_test):,} test images; "
              f"reference + K = {', '.join(map(str, ks))}, {epochs} epochs each")
    with ray_session(address) as ray_info:
        describe_ray(ray_info)
        with JobProgress(err) as progress:
            outcome = run_job(job, out_dir, ray_info, WorkerOptions(), progress, None, data.identity(), fresh)

    comparison = outcome.tables["comparison"].to_pandas()
    runs = comparison.drop_duplicates("config")
    summary = Table(title=f"MLP runs on {data.name}, {epochs} epochs")
    for column in ("config", "inputs", "Lambda2", "best test @ epoch", "vs ref", "final test", "CPU s", "KMeans CPU s"):
        summary.add_column(column, justify="right")
    for row in runs.itertuples():
        summary.add_row(row.config, str(row.n_inputs), f"{row.lambda2:.4g}", f"{fmt(row.best_test_acc)} @ {row.best_epoch}",
                        f"{100 * row.best_vs_reference:+.2f} pt", fmt(row.final_test_acc),
                        seconds(row.total_cpu_seconds), seconds(row.prep_cpu_seconds))
    out.print(summary)
    reach = Table(title="time to reach a test accuracy (training CPU s; speedup = reference's CPU s ÷ this run's; "
                        "vs ref run = the reference's whole run ÷ this run's, the seed's ratio)")
    for column in ("target", "config", "first epoch", "CPU s", "speedup", "stable from", "speedup stable", "vs ref run"):
        reach.add_column(column, justify="right")
    for row in comparison.sort_values(["target", "k"]).itertuples():
        reach.add_row(f"{row.target:.4f}", row.config,
                      "never" if math.isnan(row.epoch_first) else str(int(row.epoch_first)), seconds(row.cpu_seconds_first),
                      times(row.speedup_cpu_first), "—" if math.isnan(row.epoch_stable) else str(int(row.epoch_stable)),
                      times(row.speedup_cpu_stable), times(row.speedup_cpu_vs_reference_run))
    out.print(reach)
    reused = f" ({outcome.shards_reused} of {outcome.shards_total} shards reused)" if outcome.shards_reused else ""
    out.print(f"results: {outcome.run_dir}{reused}")
    for path in outcome.outputs:
        out.print(f"figure: {path}")


app.command("clusters")(clusters)
