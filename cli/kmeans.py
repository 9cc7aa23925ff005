"""``dreamctl kmeans sweep``: MiniBatchKMeans for every K of a range, one Ray task per K."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import Address, Fresh, Out, data_option, describe_ray, err, out
from cli.options import parse_int_range
from core.errors import BadInput
from core.kmeans import FAST, SCALES, SEED

app = typer.Typer(name="kmeans", help="KMeans in pixel space (algorithms.md §6).", no_args_is_help=True)

KRange = Annotated[str, typer.Option("--k", help="Values of K (clusters): start:stop:step with stop included, or a list like 40,70,90.")]
NInit = Annotated[int, typer.Option("--n-init", min=1, help=f"k-means++ starts per fit, the best kept. Seed: {SEED.n_init} (~100× slower for the same inertia, docs/PERFORMANCE.md).")]
MaxIter = Annotated[int, typer.Option("--max-iter", min=1, help=f"Most passes over the data per fit (early stopping usually ends sooner). Seed: {SEED.max_iter}.")]
BatchSize = Annotated[int, typer.Option("--batch-size", min=1, help=f"Images per mini-batch (k-means++ starts use 3× as many). Seed: {SEED.batch_size}.")]
Scale = Annotated[str, typer.Option("--scale", help="Pixel scaling before clustering: unit (pixel/255) or standard (per-pixel z-score).")]


def check_ks(ks: tuple[int, ...], n_samples: int, option: str) -> None:
    """Every K must satisfy 2 <= K < number of samples clustered (BadInput otherwise)."""
    for k in ks:
        if k < 2:
            raise BadInput(f"{option}: K = {k} is too small; KMeans needs at least 2 clusters")
        if k >= n_samples:
            raise BadInput(f"{option}: K = {k} must be smaller than the number of images clustered ({n_samples:,})")


def check_scale(scale: str) -> str:
    if scale not in SCALES:
        raise BadInput(f"--scale: {scale!r} is not one of {', '.join(SCALES)}")
    return scale


def parse_silhouette(text: str, repeats: int) -> tuple[int | None, int]:
    """'10000' → (10000, repeats); 'exact' → (None, 1); 'none' → (None, 0)."""
    text = text.strip().lower()
    if text == "exact":
        return None, 1
    if text in ("none", "off", "0"):
        return None, 0
    try:
        size = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise BadInput(f"--silhouette: cannot read {text!r} (use a sample size like 10000, exact or none)") from None
    if size < 2:
        raise BadInput(f"--silhouette: a sample needs at least 2 points, got {size}")
    return size, repeats


def sweep(
    ctx: typer.Context,
    k: KRange = "10:170:10",
    n_init: NInit = FAST.n_init,
    max_iter: MaxIter = FAST.max_iter,
    batch_size: BatchSize = FAST.batch_size,
    seed: Annotated[int, typer.Option(help="random_state of every fit; seed of the silhouette samples and of --samples.")] = 0,
    scale: Scale = "unit",
    samples: Annotated[int | None, typer.Option(min=3, help="Cluster a seeded random subset of this many images of train + test. Default: all (70,000 for a full set).", show_default=False)] = None,
    silhouette: Annotated[str, typer.Option(help="Silhouette score: points per random sample (an integer), exact (every point: O(n²), ~2 min per K for 70,000), or none.")] = "10000",
    silhouette_repeats: Annotated[int, typer.Option(min=1, help="Random samples per K; the score is their mean ± std.")] = 3,
    out_dir: Out = Path("results"),
    fresh: Fresh = False,
    address: Address = None,
) -> None:
    """Fit MiniBatchKMeans for every K (one Ray task each) on train + test pixels; record
    inertia, fit seconds, passes and silhouette; plot the elbow and the silhouette."""
    from cluster.progress import JobProgress
    from cluster.runner import WorkerOptions, run_job
    from cluster.runtime import ray_session
    from core.data import load_dataset
    from jobs.kmeans import KMeansSweep

    ks = parse_int_range(k, "--k")
    sil_sample, sil_repeats = parse_silhouette(silhouette, silhouette_repeats)
    check_scale(scale)
    data = load_dataset(data_option(ctx))
    n_total = len(data.x_train) + len(data.x_test)
    if samples is not None and samples > n_total:
        raise BadInput(f"--samples: {samples:,} is more than the {n_total:,} images of {data.name}")
    n_samples = samples or n_total
    check_ks(ks, n_samples, "--k")
    if sil_sample is not None and sil_sample < n_samples and sil_sample <= max(ks):
        raise BadInput(f"--silhouette: a sample of {sil_sample:,} points is too small for K = {max(ks)}; use more points than clusters")
    job = KMeansSweep(ks=ks, n_init=n_init, max_iter=max_iter, batch_size=batch_size, seed=seed, scale=scale,
                      samples=samples if samples is not None and samples < n_total else None,
                      silhouette_sample=sil_sample, silhouette_repeats=sil_repeats, dataset=data)
    err.print(f"data {data.name}: clustering {n_samples:,} images for K = {', '.join(map(str, ks))}")
    with ray_session(address) as ray_info:
        describe_ray(ray_info)
        with JobProgress(err) as progress:
            outcome = run_job(job, out_dir, ray_info, WorkerOptions(), progress, None, data.identity(), fresh)
    frame = outcome.tables["sweep"].to_pandas().sort_values("k")
    table = Table(title=job.describe(frame))
    for column in ("K", "inertia", "fit s", "CPU s", "passes", "silhouette", "± std"):
        table.add_column(column, justify="right")
    for row in frame.itertuples():
        measured = row.silhouette_repeats > 0
        table.add_row(str(row.k), f"{row.inertia:,.6g}", f"{row.fit_seconds:.2f}", f"{row.fit_cpu_seconds:.2f}",
                      str(row.n_iter), f"{row.silhouette_mean:.4f}" if measured else "off",
                      ("exact" if row.silhouette_exact else f"{row.silhouette_std:.4f}") if measured else "")
    out.print(table)
    first = frame.iloc[0]
    if first["silhouette_repeats"] > 0:
        how = ("exact (every point)" if first["silhouette_exact"] else
               f"{int(first['silhouette_repeats'])} samples of {int(first['silhouette_sample']):,} points per K")
        best = frame.loc[frame["silhouette_mean"].idxmax()]
        out.print(f"silhouette: {how}; highest at K = {int(best['k'])} ({best['silhouette_mean']:.4f})")
    reused = f" ({outcome.shards_reused} of {outcome.shards_total} K reused)" if outcome.shards_reused else ""
    out.print(f"results: {outcome.run_dir}{reused}")
    for path in outcome.outputs:
        out.print(f"figure: {path}")


app.command("sweep")(sweep)
