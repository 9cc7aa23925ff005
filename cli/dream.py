"""``dreamctl dream``: deep dreams on a photo (algorithms.md §4)."""

from __future__ import annotations

import typer
from rich.table import Table

from cli.common import out, print_outcome, run_job
from cli.spec import options_from
from cluster.options import RayOptions, RunOptions
from jobs.dream import DreamJob

MAX_TABLE_ROWS = 40
MAX_LISTED_DREAMS = 4


@options_from(job=DreamJob, run=RunOptions, ray=RayOptions)
def dream(ctx: typer.Context, job: DreamJob, run: RunOptions, ray: RayOptions) -> None:
    """Deep dream: carve what the CNN's maps look for into a photo.

    A single map, a weighted mix of maps and layers, octaves, tiles, or one dream per map.
    At most one of --map, --maps, --objective."""
    job, outcome = run_job(ctx, job, run, ray)
    frame = outcome.tables["dreams"].select(["map", "objective", "losses", "loss_start", "loss_final", "alive"]).to_pandas()
    table = Table(title=f"dreams: objective of the 28×28 version, photo → dream ({len(frame)} dreams)")
    for column in ("objective", "photo", "dream", "loss per step", "alive"):
        table.add_column(column, justify="right")
    for row in frame.head(MAX_TABLE_ROWS).itertuples():
        steps = " ".join(f"{loss:.3g}" for loss in row.losses)
        table.add_row(row.objective, f"{row.loss_start:.4g}", f"{row.loss_final:.4g}", steps,
                      "yes" if row.alive else "[red]dead")
    out.print(table)
    if len(frame) > MAX_TABLE_ROWS:
        out.print(f"… {len(frame) - MAX_TABLE_ROWS} more rows in summary.parquet")
    dead = frame.loc[~frame["alive"], "map"].tolist()
    if dead:
        out.print(f"{len(dead)} of {len(frame)} dreams did not move (objective 0 on the photo): maps {', '.join(map(str, dead))}")
    dream_pngs = [location for location in outcome.outputs if location.rsplit("/", 1)[-1].startswith("dream-")]
    if len(dream_pngs) > MAX_LISTED_DREAMS:  # list the sheets and the summary, not every dream
        outcome.outputs = [location for location in outcome.outputs if location not in dream_pngs]
    print_outcome(outcome)
    if len(dream_pngs) > MAX_LISTED_DREAMS:
        out.print(f"dreams: {len(dream_pngs)} PNGs dream-map*.png in {outcome.run_dir}")
