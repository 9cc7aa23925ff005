"""``dreamctl experiment clusters``: the seed's comparison of the MLP on pixels with MLPs
on cluster-distance features (algorithms.md §6), one Ray task per configuration.
``dreamctl experiment rescue``: random starts, warm-ups and the precursor on the maps random
starts leave dead, on several trained CNNs (issue 13, jobs/rescue.py)."""

from __future__ import annotations

import math

import typer
from rich.table import Table

from cli.common import out, print_outcome, run_experiment, run_job
from cli.spec import options_from
from cluster.options import RayOptions, RunOptions
from jobs.clusters import ClustersExperiment
from jobs.rescue import RescueExperiment
from jobs.seed import SeedExperiment

app = typer.Typer(name="experiment", help="Experiments that compare several training runs or methods.", no_args_is_help=True)


def number(value: float, template: str) -> str:
    return "—" if math.isnan(value) else template.format(value)


@options_from(job=ClustersExperiment, run=(RunOptions, ("out", "fresh")), ray=(RayOptions, ("address",)))
def clusters(ctx: typer.Context, job: ClustersExperiment, run: RunOptions, ray: RayOptions) -> None:
    """Train the reference MLP (pixels) and one MLP per K (cluster distances), one Ray task
    each; compare epochs and CPU seconds to reach given test accuracies and the best test
    accuracy, relative to the reference (Parquet + comparison.png)."""
    job, outcome = run_job(ctx, job, run, ray)
    comparison = outcome.tables["comparison"].to_pandas()
    runs = comparison.drop_duplicates("config")
    summary = Table(title=f"MLP runs on {job.dataset.name}, {job.mlp.epochs} epochs")
    for column in ("config", "inputs", "Lambda2", "best test @ epoch", "vs ref", "final test", "CPU s", "KMeans CPU s"):
        summary.add_column(column, justify="right")
    for row in runs.itertuples():
        summary.add_row(row.config, str(row.n_inputs), f"{row.lambda2:.4g}",
                        f"{number(row.best_test_acc, '{:.4f}')} @ {row.best_epoch}", f"{100 * row.best_vs_reference:+.2f} pt",
                        number(row.final_test_acc, "{:.4f}"), number(row.total_cpu_seconds, "{:.1f}"),
                        number(row.prep_cpu_seconds, "{:.1f}"))
    out.print(summary)
    reach = Table(title="time to reach a test accuracy (training CPU s; speedup = reference's CPU s ÷ this run's; "
                        "vs ref run = the reference's whole run ÷ this run's, the seed's ratio)")
    for column in ("target", "config", "first epoch", "CPU s", "speedup", "stable from", "speedup stable", "vs ref run"):
        reach.add_column(column, justify="right")
    for row in comparison.sort_values(["target", "k"]).itertuples():
        reach.add_row(f"{row.target:.4f}", row.config, number(row.epoch_first, "{:.0f}").replace("—", "never"),
                      number(row.cpu_seconds_first, "{:.1f}"), number(row.speedup_cpu_first, "{:.2f}×"),
                      number(row.epoch_stable, "{:.0f}"), number(row.speedup_cpu_stable, "{:.2f}×"),
                      number(row.speedup_cpu_vs_reference_run, "{:.2f}×"))
    out.print(reach)
    print_outcome(outcome)


app.command("clusters")(clusters)


@options_from(job=RescueExperiment, run=(RunOptions, ("out", "fresh")), ray=(RayOptions, ("address",)))
def rescue(ctx: typer.Context, job: RescueExperiment, run: RunOptions, ray: RayOptions) -> None:
    """Train one CNN per --seeds on --data, then on every map run random starts and the
    pre-ReLU and leaky-ReLU warm-ups (the same starts), and the pruned precursor on the maps
    random starts leave dead (or all: --precursor-maps): each a normal run (dreamctl runs lists
    them), resumed like any other. Compares final losses, maps woken, image-steps and CPU
    seconds (Parquet + rescue.png)."""
    from jobs.rescue import method_summary

    runs = run_experiment(ctx, job, run, ray)
    _, outcome = runs[-1]
    models = outcome.tables["models"].to_pandas()
    data = next(bound for bound, _ in runs if bound.needs_data).dataset.name
    out.print(f"models on {data}: " + ", ".join(
        f"seed {row.seed} test {row.test_accuracy:.4f}" for row in models.itertuples()))
    comparison = outcome.tables["comparison"].to_pandas()
    summary = method_summary(comparison)
    dead = int(summary["random_dead"].max())
    models_text = f"{len(job.seeds)} model{'s' * (len(job.seeds) > 1)}"
    table = Table(title=f"{job.layer}, {models_text}: the {dead} maps all {job.restarts} random starts left "
                        f"dead. median, min: of loss ÷ the best method's on the map; best: maps it was best on")
    for column in ("method", "woken", "median", "min", "best", "image-steps", "CPU s"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in summary.itertuples():
        table.add_row(row.method, f"{row.woken}/{row.random_dead}", number(row.median_ratio_dead_maps, "{:.3f}"),
                      number(row.min_ratio_dead_maps, "{:.3f}"), str(row.best_on_dead_maps),
                      f"{row.image_steps_dead_maps:,}", f"{row.cpu_seconds_dead_maps:.0f}")
    out.print(table)
    table = Table(title="every map each method ran on")
    for column in ("method", "maps alive", "median ratio", "image-steps", "CPU s"):
        table.add_column(column, justify="right", no_wrap=True)
    for row in summary.itertuples():
        table.add_row(row.method, f"{row.alive}/{row.maps}", number(row.median_ratio, "{:.3f}"),
                      f"{row.image_steps:,}", f"{row.cpu_seconds:.0f}")
    out.print(table)
    reused = sum(1 for _, done in runs if done.shards_reused == done.shards_total)
    out.print(f"runs: {len(runs)} ({reused} reused whole)")
    print_outcome(outcome)


app.command("rescue")(rescue)


@options_from(job=SeedExperiment, run=(RunOptions, ("out", "fresh")), ray=(RayOptions, ("address",)))
def seed(ctx: typer.Context, job: SeedExperiment, run: RunOptions, ray: RayOptions) -> None:
    """The articles' experiments on --data (full MNIST: --data mnist): train the CNN with their
    settings, OIPs of every conv3 map from random starts and the maps they leave dead, the
    precursor and the default rescue on those, the MLP on pixels against K = 70 cluster
    distances, and the KMeans sweep. Each step is a normal run (dreamctl runs lists them),
    resumed like any other; the table sets every number beside the articles'."""
    runs = run_experiment(ctx, job, run, ray)
    _, outcome = runs[-1]
    data = next(bound for bound, _ in runs if bound.needs_data).dataset
    table = Table(title=f"the articles' numbers on {data.name} ({len(data.x_train):,} train / "
                        f"{len(data.x_test):,} test images)")
    for column in ("what", "articles", "dreamctl", "run"):
        table.add_column(column)
    for row in outcome.tables["fidelity"].to_pylist():
        table.add_row(row["what"], row["articles"], row["text"], row["run"])
    out.print(table)
    reused = sum(1 for _, done in runs if done.shards_reused == done.shards_total)
    out.print(f"runs: {len(runs)} ({reused} reused whole)")
    print_outcome(outcome)


app.command("seed")(seed)
