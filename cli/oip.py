"""``dreamctl oip``: OIPs for maps of a layer from random multi-scale starts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import Actors, Address, ChunkSize, CpusPerActor, Fresh, GpusPerActor, Layer, ModelPath, Out, data_option, out, run_cnn_job
from cli.options import parse_maps
from core.ascent import LEARNING_RATE


def oip(
    ctx: typer.Context,
    layer: Layer = "conv3",
    maps: Annotated[str, typer.Option(help="Maps: all, a range 0-15, a list 3,7,56, or a mix.")] = "all",
    epochs: Annotated[int, typer.Option(min=0, help="Ascent steps per image.")] = 1200,
    restarts: Annotated[int, typer.Option(min=1, help="Random 4-scale start images per map.")] = 8,
    seed: Annotated[int, typer.Option(help="Seed of the start images.")] = 0,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="Step size η on standardized pixels.")] = LEARNING_RATE,
    out_dir: Out = Path("results"),
    model: ModelPath = None,
    fresh: Fresh = False,
    address: Address = None,
    actors: Actors = None,
    cpus_per_actor: CpusPerActor = 1.0,
    gpus_per_actor: GpusPerActor = 0.0,
    chunk_size: ChunkSize = 256,
) -> None:
    """Find an OIP (input pattern maximizing a map's mean activation) for each map."""
    from jobs.oip import OipJob, best_per_map

    job = OipJob(layer=layer, maps=parse_maps(maps, layer), epochs=epochs, restarts=restarts, seed=seed,
                 learning_rate=learning_rate)
    outcome = run_cnn_job(job, model=model, data_spec=data_option(ctx), out=out_dir, fresh=fresh, address=address,
                          actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                          chunk_size=chunk_size)
    best = best_per_map(outcome.tables["oips"])
    table = Table(title=f"OIPs of {layer}: best of {restarts} restarts after {epochs} epochs")
    for column in ("map", "best loss", "alive", "alive restarts"):
        table.add_column(column, justify="right")
    alive_counts = outcome.tables["oips"].to_pandas().groupby("map")["alive"].sum()
    for row in best.itertuples():
        table.add_row(str(row.map), f"{row.loss:.4g}", "yes" if row.alive else "[red]dead", str(int(alive_counts[row.map])))
    out.print(table)
    report_dead(best)
    report_paths(outcome)


def report_dead(best) -> None:
    """One line naming the maps that stayed at loss 0."""
    dead = best.loc[~best["alive"], "map"].tolist()
    out.print(f"{len(best) - len(dead)} of {len(best)} maps alive" + (f"; dead maps: {', '.join(map(str, dead))}" if dead else ""))


def report_paths(outcome) -> None:
    reused = f" ({outcome.shards_reused} of {outcome.shards_total} shards reused)" if outcome.shards_reused else ""
    out.print(f"results: {outcome.run_dir}{reused}")
    for path in outcome.outputs:
        out.print(f"figure: {path}")
