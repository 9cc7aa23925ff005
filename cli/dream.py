"""``dreamctl dream``: deep dreams on a photo (algorithms.md §4)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from cli.common import Actors, Address, ChunkSize, CpusPerActor, Fresh, GpusPerActor, Layer, ModelPath, Out, data_option, out, run_cnn_job
from cli.options import check_layer, parse_maps, parse_objective
from core.dream import DREAM_LEARNING_RATE, OCTAVE_SCALE
from core.errors import BadInput

DEFAULT_MAP = 56  # the seed's example map of conv3


def dream(
    ctx: typer.Context,
    map_id: Annotated[int | None, typer.Option("--map", help=f"Dream on one map of --layer. Default: {DEFAULT_MAP} when neither --maps nor --objective is given.", show_default=False)] = None,
    maps: Annotated[str | None, typer.Option("--maps", help="One dream per map of --layer: all, a range 0-15, a list 3,7,56, or a mix; with a contact sheet.", show_default=False)] = None,
    objective: Annotated[str | None, typer.Option("--objective", help="One dream on a weighted mix: 'conv3:56=1.0,conv3:12=0.5,conv2=0.2'. LAYER alone = the whole layer (weight spread over its maps); no '=W' = weight 1.", show_default=False)] = None,
    layer: Layer = "conv3",
    image: Annotated[Path | None, typer.Option("--image", help="Photo to dream on (any format Pillow reads): converted to gray, center-cropped to a square. Default: scikit-learn's flower.jpg.", show_default=False)] = None,
    size: Annotated[int, typer.Option(min=28, max=4096, help="Side of the square dream image, px.")] = 560,
    iterations: Annotated[int, typer.Option(min=1, help="Dream steps (per octave): ascent on the 28×28 version or tiles, upscale, re-add the detail.")] = 4,
    epochs: Annotated[int, typer.Option(min=0, help="Ascent steps per dream step.")] = 40,
    learning_rate: Annotated[float, typer.Option(min=0.0, help="Ascent step size η on standardized pixels (OIPs use 0.05; that buries the photo).")] = DREAM_LEARNING_RATE,
    octaves: Annotated[int, typer.Option(min=1, help="Image scales, smallest first, each --octave-scale times larger; the detail each scale lost is re-added. 1 = one scale.")] = 1,
    octave_scale: Annotated[float, typer.Option(min=1.0, help="Size ratio of successive octaves (> 1).")] = OCTAVE_SCALE,
    tile_grid: Annotated[int, typer.Option(min=1, help="Cut the image into N×N tiles, each downscaled to 28×28, dreamt in one batch; the grid is rolled randomly at every step (no seams). Fewer tiles at small octaves. 1 = the whole image as one 28×28 view.")] = 1,
    seed: Annotated[int, typer.Option(help="Seed of the random tile rolls (per map).")] = 0,
    contrast_width: Annotated[float, typer.Option(min=0.001, help="Value width of the last panel: (x − mean)/std · width + 0.5, clipped to [0, 1].")] = 0.2,
    maps_per_shard: Annotated[int, typer.Option(min=1, help="At most this many dreams per shard (one batch on an actor).")] = 8,
    out_dir: Out = Path("results"),
    model: ModelPath = None,
    fresh: Fresh = False,
    address: Address = None,
    actors: Actors = None,
    cpus_per_actor: CpusPerActor = 1.0,
    gpus_per_actor: GpusPerActor = 0.0,
    chunk_size: ChunkSize = 256,
) -> None:
    """Deep dream: carve what the CNN's maps look for into a photo.

    A single map, a weighted mix of maps and layers, octaves, tiles, or one dream per map.
    Exactly one of --map, --maps, --objective."""
    from jobs.dream import DreamJob, load_image

    chosen = [name for name, value in (("--map", map_id), ("--maps", maps), ("--objective", objective)) if value is not None]
    if len(chosen) > 1:
        raise BadInput(f"use only one of --map, --maps, --objective (got {' and '.join(chosen)})")
    n_maps = check_layer(layer)
    terms, map_ids = None, ()
    if objective is not None:
        terms = parse_objective(objective)
    elif maps is not None:
        map_ids = parse_maps(maps, layer)
    else:
        map_id = DEFAULT_MAP if map_id is None else map_id
        if not 0 <= map_id < n_maps:
            raise BadInput(f"--map: map {map_id} is out of range: {layer} has maps 0-{n_maps - 1}")
        map_ids = (map_id,)
    pixels, image_name = load_image(image, size)
    job = DreamJob(image=pixels, image_name=image_name, layer=layer, maps=map_ids, objective=terms,
                   iterations=iterations, epochs=epochs, learning_rate=learning_rate, octaves=octaves,
                   octave_scale=octave_scale, tile_grid=tile_grid, seed=seed, contrast_width=contrast_width,
                   maps_per_shard=maps_per_shard)
    outcome = run_cnn_job(job, model=model, data_spec=data_option(ctx), out=out_dir, fresh=fresh, address=address,
                          actors=actors, cpus_per_actor=cpus_per_actor, gpus_per_actor=gpus_per_actor,
                          chunk_size=chunk_size)
    report(outcome)


def report(outcome) -> None:
    """The dreams as a table (at most 40 rows), then where the files are."""
    frame = outcome.tables["dreams"].select(["map", "objective", "losses", "loss_start", "loss_final", "alive"]).to_pandas()
    table = Table(title=f"dreams: objective of the 28×28 version, photo → dream ({len(frame)} dreams)")
    for column in ("objective", "photo", "dream", "loss per step", "alive"):
        table.add_column(column, justify="right")
    for row in frame.head(40).itertuples():
        steps = " ".join(f"{loss:.3g}" for loss in row.losses)
        table.add_row(row.objective, f"{row.loss_start:.4g}", f"{row.loss_final:.4g}", steps,
                      "yes" if row.alive else "[red]dead")
    out.print(table)
    if len(frame) > 40:
        out.print(f"… {len(frame) - 40} more rows in summary.parquet")
    dead = frame.loc[~frame["alive"], "map"].tolist()
    if dead:
        out.print(f"{len(dead)} of {len(frame)} dreams did not move (objective 0 on the photo): maps {', '.join(map(str, dead))}")
    reused = f" ({outcome.shards_reused} of {outcome.shards_total} shards reused)" if outcome.shards_reused else ""
    out.print(f"results: {outcome.run_dir}{reused}")
    pngs = [path for path in outcome.outputs if path.name.startswith("dream-")]
    for path in outcome.outputs:
        if not path.name.startswith("dream-") or len(pngs) <= 4:
            out.print(f"{'summary' if path.suffix == '.parquet' else 'figure'}: {path}")
    if len(pngs) > 4:
        out.print(f"dreams: {len(pngs)} PNGs dream-map*.png in {outcome.run_dir}")
