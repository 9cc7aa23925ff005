"""``dreamctl mlp train``: one run of the numpy MLP (algorithms.md §5), on pixels or on
cluster-distance features (§6), with a per-epoch progress bar.

The run is one shard of ``jobs.mlp.MLPTrainJob`` computed in this process (no Ray: the
progress bar shows every epoch's accuracies) and stored like every job's result:
``<out>/mlp/<run_id>/epochs/part-….parquet``, ``curves.png``, ``_manifest.json``, ``_SUCCESS``.
A rerun with the same options finds the finished part and only redraws the figure.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from cli.common import Fresh, Out, data_option, err, out
from cli.kmeans import check_ks, check_scale
from core.errors import BadInput
from core.kmeans import FAST, KMeansSettings
from jobs.mlp import FIT_ON, MLPSettings

app = typer.Typer(name="mlp", help="The numpy MLP of algorithms.md §5 (784-70-30-10, sigmoid, log-loss, L2).", no_args_is_help=True)
DEFAULTS = MLPSettings()
MLP_PANEL = "MLP"
KMEANS_PANEL = "Cluster features"

# ----- options shared with ``dreamctl experiment clusters`` ----------------------------------
Epochs = Annotated[int, typer.Option(min=1, help="Training epochs (passes over the training set).", rich_help_panel=MLP_PANEL)]
Hidden = Annotated[str, typer.Option(help="Hidden layer sizes, comma-separated (input: 784 pixels or K; output: 10 classes).", rich_help_panel=MLP_PANEL)]
LearningRate = Annotated[float, typer.Option(min=0.0, help="Learning rate η0 of the first epoch (on the gradient summed over a batch).", rich_help_panel=MLP_PANEL)]
LrDecrease = Annotated[float, typer.Option(min=0.0, help="Learning-rate decrease d: epoch e (from 0) uses η0 / (1 + d·e).", rich_help_panel=MLP_PANEL)]
Momentum = Annotated[float, typer.Option(min=0.0, help="Momentum rate: update = −η·gradient + momentum · previous update.", rich_help_panel=MLP_PANEL)]
MlpBatchSize = Annotated[int, typer.Option("--batch-size", min=1, help="Samples per mini-batch (reshuffled every epoch).", rich_help_panel=MLP_PANEL)]
InitRange = Annotated[float, typer.Option(min=0.0, help="Initial weights uniform in ± init-range / √(nodes of the feeding layer).", rich_help_panel=MLP_PANEL)]
EvalEvery = Annotated[int, typer.Option(min=1, help="Compute train and test accuracy every this many epochs (and at the last).", rich_help_panel=MLP_PANEL)]
Seed = Annotated[int, typer.Option(help="Seed of the MLP's initial weights and batch shuffling.", rich_help_panel=MLP_PANEL)]
Dtype = Annotated[str, typer.Option(help="Floating point type of weights and arithmetic: float32 or float64.", rich_help_panel=MLP_PANEL)]
ClusterNInit = Annotated[int, typer.Option("--n-init", min=1, help="MiniBatchKMeans k-means++ starts (seed: 500; same inertia, ~100× slower).", rich_help_panel=KMEANS_PANEL)]
ClusterMaxIter = Annotated[int, typer.Option("--max-iter", min=1, help="MiniBatchKMeans: most passes over the data.", rich_help_panel=KMEANS_PANEL)]
ClusterBatch = Annotated[int, typer.Option("--kmeans-batch-size", min=1, help="MiniBatchKMeans: images per mini-batch.", rich_help_panel=KMEANS_PANEL)]
ClusterScale = Annotated[str, typer.Option("--scale", help="Pixel scaling before clustering: unit (pixel/255) or standard (per-pixel z-score).", rich_help_panel=KMEANS_PANEL)]
FitOn = Annotated[str, typer.Option("--fit-on", help="Images KMeans clusters (never labels): all = train + test (the seed), or train.", rich_help_panel=KMEANS_PANEL)]
KMeansSeed = Annotated[int, typer.Option("--kmeans-seed", help="random_state of MiniBatchKMeans.", rich_help_panel=KMEANS_PANEL)]


def parse_hidden(text: str) -> tuple[int, ...]:
    """'70,30' → (70, 30); every size >= 1."""
    try:
        sizes = tuple(int(value) for value in text.split(",") if value.strip())
    except ValueError:
        raise BadInput(f"--hidden: cannot read {text!r} (use sizes like 70,30)") from None
    if not sizes or min(sizes) < 1:
        raise BadInput(f"--hidden: {text!r} must be one or more positive sizes, like 70,30")
    return sizes


def mlp_settings(*, hidden: str, lambda2: float | None, epochs: int, learning_rate: float, lr_decrease: float,
                 momentum: float, batch_size: int, init_range: float, eval_every: int, seed: int, dtype: str,
                 scale_lambda2: bool) -> MLPSettings:
    if dtype not in ("float32", "float64"):
        raise BadInput(f"--dtype: {dtype!r} is not float32 or float64")
    if lambda2 is not None and not lambda2 >= 0:
        raise BadInput(f"--lambda2: must be >= 0, got {lambda2}")
    settings = MLPSettings(hidden=parse_hidden(hidden), lambda2=DEFAULTS.lambda2 if lambda2 is None else lambda2,
                           scale_lambda2=scale_lambda2, learning_rate=learning_rate, lr_decrease=lr_decrease,
                           momentum=momentum, batch_size=batch_size, epochs=epochs, init_range=init_range,
                           eval_every=eval_every, seed=seed, dtype=dtype)
    try:
        settings.config(784, 10, 784)  # the core's own checks, here at the edge
    except ValueError as error:
        raise BadInput(f"MLP options: {error}") from None
    return settings


def check_fit_on(fit_on: str) -> str:
    if fit_on not in FIT_ON:
        raise BadInput(f"--fit-on: {fit_on!r} is not one of {', '.join(FIT_ON)}")
    return fit_on


def n_clustered(data, fit_on: str) -> int:
    """How many images KMeans clusters for the MLP's features."""
    return len(data.x_train) + (len(data.x_test) if fit_on == "all" else 0)


def fmt(value: float) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def train(
    ctx: typer.Context,
    clusters: Annotated[int | None, typer.Option("--clusters", help="Train on the standardized distances to K MiniBatchKMeans centroids instead of the 784 pixels (K inputs). Default: pixels.", show_default=False)] = None,
    epochs: Epochs = DEFAULTS.epochs,
    hidden: Hidden = ",".join(map(str, DEFAULTS.hidden)),
    lambda2: Annotated[float | None, typer.Option("--lambda2", help="L2 coefficient on the weights (biases excluded). Default: 0.2 for pixels, 0.2·K/784 with --clusters (the seed's rule); a given value is used as is.", show_default=False, rich_help_panel=MLP_PANEL)] = None,
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
    threads: Annotated[int, typer.Option(min=1, help="BLAS/OpenMP threads of this process. 1 is fastest for these small matrices (and is what a Ray task per CPU gets).")] = 1,
    out_dir: Out = Path("results"),
    fresh: Fresh = False,
) -> None:
    """Train the MLP with mini-batch gradient descent; write per-epoch metrics (Parquet) and
    cost/accuracy curves (PNG)."""
    from threadpoolctl import threadpool_limits

    from cluster.runner import run_in_process
    from core.data import load_dataset
    from jobs.mlp import MLPTrainJob

    settings = mlp_settings(hidden=hidden, lambda2=lambda2, epochs=epochs, learning_rate=learning_rate,
                            lr_decrease=lr_decrease, momentum=momentum, batch_size=batch_size, init_range=init_range,
                            eval_every=eval_every, seed=seed, dtype=dtype, scale_lambda2=lambda2 is None)
    check_scale(scale)
    check_fit_on(fit_on)
    data = load_dataset(data_option(ctx))
    if clusters is not None:
        check_ks((clusters,), n_clustered(data, fit_on), "--clusters")
    job = MLPTrainJob(clusters=clusters, mlp=settings, kmeans=KMeansSettings(n_init, max_iter, kmeans_batch_size, kmeans_seed),
                      scale=scale, fit_on=fit_on, dataset=data)
    what = "784 standardized pixels" if clusters is None else f"distances to {clusters} cluster centroids"
    err.print(f"data {data.name}: {len(data.x_train):,} train / {len(data.x_test):,} test images; inputs: {what}")

    progress = Progress(
        TextColumn("[bold]train MLP"), BarColumn(bar_width=24), MofNCompleteColumn(), TextColumn("epochs"),
        TextColumn("{task.fields[status]}"), TimeElapsedColumn(), TimeRemainingColumn(compact=True), console=err,
    )
    with progress:
        task = progress.add_task("train", total=epochs, status="preparing inputs" if clusters else "")
        last = {"train": math.nan, "test": math.nan}

        def on_epoch(row: dict) -> None:
            if not math.isnan(row["test_acc"]):
                last["train"], last["test"] = row["train_acc"], row["test_acc"]
            status = f"loss {row['loss']:.4g}  train {fmt(last['train'])}  test {fmt(last['test'])}"
            progress.update(task, completed=row["epoch"], status=status)

        with threadpool_limits(limits=threads):
            outcome = run_in_process(job, out_dir, data.identity(), fresh, on_epoch=on_epoch)
        progress.update(task, completed=epochs)

    frame = outcome.tables["epochs"].to_pandas()
    evaluated = frame.dropna(subset=["test_acc"])
    best = evaluated.loc[evaluated["test_acc"].idxmax()]
    final = evaluated.iloc[-1]
    table = Table(title=job.title(frame))
    for column in ("epochs", "final train acc", "final test acc", "best test acc", "at epoch", "train CPU s", "wall s"):
        table.add_column(column, justify="right")
    table.add_row(str(len(frame)), fmt(final["train_acc"]), fmt(final["test_acc"]), fmt(best["test_acc"]),
                  str(int(best["epoch"])), f"{frame['cpu_seconds'].sum():.1f}", f"{frame['seconds'].sum():.1f}")
    out.print(table)
    if clusters is not None:
        out.print(f"features: KMeans fit + distances took {frame['prep_seconds'].iloc[0]:.1f} s "
                  f"({frame['prep_cpu_seconds'].iloc[0]:.1f} CPU s)")
    layers = sorted(int(c.rsplit("_", 1)[1]) for c in frame.columns if c.startswith("backward_cpu_s_"))
    per_layer = ", ".join(f"L{l}: fw {frame[f'forward_cpu_s_{l}'].mean():.4f} bw {frame[f'backward_cpu_s_{l}'].mean():.4f}"
                          for l in layers)
    out.print(f"CPU s per epoch by weight layer ({per_layer})")
    reused = " (finished before: reused)" if outcome.shards_reused else ""
    out.print(f"results: {outcome.run_dir}{reused}")
    for path in outcome.outputs:
        out.print(f"figure: {path}")


app.command("train")(train)
