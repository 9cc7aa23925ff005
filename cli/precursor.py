"""``dreamctl precursor``: systematic coarse-pattern search, then full OIP runs (§3)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import Actors, Address, ChunkSize, CpusPerActor, Fresh, GpusPerActor, Layer, ModelPath, Out, data_option, out, run_cnn_job
from cli.oip import report_dead, report_paths
from cli.options import parse_floats, parse_maps
from core.ascent import LEARNING_RATE


def precursor(
    ctx: typer.Context,
    layer: Layer = "conv3",
    maps: Annotated[str, typer.Option(help="Maps: all, a range 0-15, a list 3,7,56, or a mix.")] = "all",
    grid: Annotated[int, typer.Option(min=1, help="Coarse grid cells per side (grid² cells).")] = 3,
    levels: Annotated[str, typer.Option(help="Pixel levels a cell can take, comma-separated, in [0, 1].")] = "0.2,0.5,0.8",
    test_epochs: Annotated[int, typer.Option(min=0, help="Ascent steps per pattern in phase 1 (the score).")] = 10,
    top: Annotated[int, typer.Option(min=1, help="Best patterns per map that get the full run.")] = 8,
    full_epochs: Annotated[int, typer.Option(min=0, help="Ascent steps of the phase-2 runs.")] = 1200,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="Step size η on standardized pixels.")] = LEARNING_RATE,
    patterns_per_shard: Annotated[int, typer.Option(min=1, help="Phase-1 shard size (patterns of one map).")] = 4096,
    out_dir: Out = Path("results"),
    model: ModelPath = None,
    fresh: Fresh = False,
    address: Address = None,
    actors: Actors = None,
    cpus_per_actor: CpusPerActor = 1.0,
    gpus_per_actor: GpusPerActor = 0.0,
    chunk_size: ChunkSize = 256,
) -> None:
    """Precursor run: score every coarse pattern per map, then optimize the best ones."""
    from jobs.precursor import PrecursorJob, best_candidates

    job = PrecursorJob(layer=layer, maps=parse_maps(maps, layer), grid=grid, levels=parse_floats(levels, "--levels"),
                       test_epochs=test_epochs, top=top, full_epochs=full_epochs, learning_rate=learning_rate,
                       patterns_per_shard=patterns_per_shard)
    outcome = run_cnn_job(job, model=model, data_spec=data_option(ctx), out=out_dir, fresh=fresh, address=address,
                          actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                          chunk_size=chunk_size)
    scores = outcome.tables["scores"].to_pandas()
    positive_share = (scores["loss"] > 0).groupby(scores["map"]).mean()
    best = best_candidates(outcome.tables["oips"])
    table = Table(title=f"precursor {layer}: {job.n_patterns:,} patterns × {test_epochs} epochs, top {top} × {full_epochs} epochs")
    for column in ("map", "best loss", "alive", "rank", "pattern", "coarse levels", "patterns > 0"):
        table.add_column(column, justify="right")
    for row in best.itertuples():
        table.add_row(str(row.map), f"{row.loss:.4g}", "yes" if row.alive else "[red]dead", str(row.rank),
                      str(row.pattern), job.describe_pattern(row.pattern), f"{positive_share[row.map]:.1%}")
    out.print(table)
    report_dead(best)
    report_paths(outcome)
