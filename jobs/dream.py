"""Deep dreams (algorithms.md §4) as a job: one weighted dream, or one dream per map.

Phase ``dreams``: a shard is a block of dreams that runs as one batch on a CNN actor (every
dream step is one ``Ascent.run`` call for all images and tiles of the block). Dream i of a
block is seeded by (seed, map), so a result does not depend on how the work was cut. The
input image (gray pixels, loaded on the driver by :func:`load_image`) is part of the job
spec; the phase's bound ``compute`` carries it to the actor, and its checksum is in
``params()`` so another image gives another run id.

Outputs (``write_outputs``): per dream a gray PNG of the final dream; for up to
``MAX_PANEL_ROWS`` dreams the six-panel row of algorithms.md §4; for a batch a contact
sheet; and ``summary.parquet`` (one row per dream: map, objective, parameters, losses per
step, PNG paths) in the run folder.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
import pyarrow as pa

from core.dream import (
    DREAM_LEARNING_RATE,
    OCTAVE_SCALE,
    Term,
    parse_objective,
    carve,
    check_tile_grid,
    deep_dream,
    objective_layers,
    objective_text,
    objective_weights,
    octave_sizes,
    resize,
    to_model_units,
    to_pixels,
)
from core.errors import BadParameter
from core.model import CONV_LAYERS, IMAGE_SIZE
from core.params import check_params, param
from jobs.base import IMAGE_TYPE, Artifact, CNNPhase, ModelSession, Shard, check_maps, layer_param, learning_rate_param, maps_param, spec_params

DEFAULT_IMAGE = "flower.jpg"  # scikit-learn's bundled sample photo
MAX_PANEL_ROWS = 16  # six-panel rows are drawn for at most this many dreams
THUMBNAIL = 140  # contact-sheet thumbnails, px
SUMMARY = "summary.parquet"

if TYPE_CHECKING:
    from jobs.figures import Panel

DREAM_SCHEMA = pa.schema(
    [
        ("map", pa.int32()),  # the map of a --map/--maps dream; -1 for a weighted objective
        ("objective", pa.string()),  # e.g. 'conv3:56=1'
        ("losses", pa.list_(pa.float32())),  # objective after each dream step (tiles: mean)
        ("loss_start", pa.float32()),  # objective of the photo's 28×28 version
        ("loss_final", pa.float32()),  # objective of the dream's 28×28 version
        ("alive", pa.bool_()),  # False: the objective stayed 0, nothing moved (dead map)
        ("height", pa.int32()),
        ("width", pa.int32()),
        ("dream", pa.list_(pa.float32())),  # height×width gray pixels, row-major, 0 black 1 white, unclipped
        ("view_first", IMAGE_TYPE),  # 28×28 the CNN saw after step 1 (the OIP stage), gray pixels
        ("view_last", IMAGE_TYPE),  # 28×28 after the last step, gray pixels
        ("seconds", pa.float32()),  # compute time of the dream (its share of the shard)
    ]
)


# ----- the input image (driver side) --------------------------------------------------------
def load_image(path: Path | None, size: int) -> tuple[np.ndarray, str]:
    """The photo to dream on as gray pixels: float32 (size, size) in [0, 1].

    ``path`` None = scikit-learn's ``flower.jpg``. Converted to gray (ITU-R 601 luma),
    center-cropped to a square, resized bicubically (core.dream.resize). Returns
    (pixels, name). Raises BadParameter for a missing or unreadable file, a file that is no
    image, or an image smaller than 28×28.
    """
    from PIL import Image, UnidentifiedImageError

    if path is None:
        from sklearn.datasets import load_sample_image

        gray, name = Image.fromarray(load_sample_image(DEFAULT_IMAGE)).convert("L"), DEFAULT_IMAGE
    else:
        path = Path(path)
        if not path.is_file():
            raise BadParameter("image", f"no file at {path}")
        try:
            with Image.open(path) as opened:
                gray = opened.convert("L")
        except (UnidentifiedImageError, Image.DecompressionBombError) as error:
            raise BadParameter("image", f"{path} is not an image Pillow can read ({type(error).__name__})") from None
        except OSError as error:
            raise BadParameter("image", f"cannot read {path} ({error})") from None
        name = path.name
    width, height = gray.size
    if min(width, height) < IMAGE_SIZE:
        raise BadParameter("image", f"{name} is {width}x{height} px; the CNN needs at least 28x28")
    pixels = np.asarray(gray, np.float32) / 255.0
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = pixels[top : top + side, left : left + side]
    return np.clip(resize(square[None], size, size)[0], 0.0, 1.0), name


def image_checksum(pixels: np.ndarray) -> str:
    """SHA-256 (first 16 hex digits) of the float32 pixels and their shape."""
    pixels = np.ascontiguousarray(pixels, np.float32)
    return hashlib.sha256(repr(pixels.shape).encode() + pixels.tobytes()).hexdigest()[:16]


# ----- the job spec -------------------------------------------------------------------------
DEFAULT_MAP = 56  # the seed's example map of conv3


@dataclass(frozen=True)
class DreamJob:
    """Parameters of ``dreamctl dream``.

    Exactly one of ``map_id`` (one dream on one map; the default, map 56), ``maps`` (one dream
    per map of ``layer``) and ``objective`` (one dream on a weighted mix). ``image`` is loaded
    when the spec is built: ``pixels`` gray (size, size) in [0, 1]. With ``octaves == 1`` and
    ``tile_grid == 1`` a dream is the part-I carving, else the general dream with octaves and
    rolled tiles.
    """

    map_id: int | None = param(None, f"Dream on one map of --layer. Default: {DEFAULT_MAP} when neither --maps "
                               "nor --objective is given.", low=0, option="--map")
    maps: tuple[int, ...] | None = maps_param(None, "One dream per map of --layer: all, a range 0-15, a list 3,7,56, "
                                              "or a mix; with a contact sheet.")
    objective: tuple[Term, ...] | None = param(None, "One dream on a weighted mix: 'conv3:56=1.0,conv3:12=0.5,conv2=0.2'. "
                                               "LAYER alone = the whole layer (weight spread over its maps); no '=W' = weight 1.",
                                               parse=lambda text, spec: parse_objective(text, CONV_LAYERS))
    layer: str = layer_param()
    image: Path | None = param(None, "Photo to dream on (any format Pillow reads): converted to gray, center-cropped "
                               "to a square. Default: scikit-learn's flower.jpg.")
    size: int = param(560, "Side of the square dream image, px.", low=IMAGE_SIZE, high=4096)
    iterations: int = param(4, "Dream steps (per octave): ascent on the 28×28 version or tiles, upscale, re-add the detail.", low=1)
    epochs: int = param(40, "Ascent steps per dream step.", low=0)
    learning_rate: float = learning_rate_param(DREAM_LEARNING_RATE, "Ascent step size η on standardized pixels "
                                               "(OIPs use 0.05; that buries the photo).")
    octaves: int = param(1, "Image scales, smallest first, each --octave-scale times larger; the detail each scale "
                         "lost is re-added. 1 = one scale.", low=1)
    octave_scale: float = param(OCTAVE_SCALE, "Size ratio of successive octaves.", above=1.0)
    tile_grid: int = param(1, "Cut the image into N×N tiles, each downscaled to 28×28, dreamt in one batch; the grid is "
                           "rolled randomly at every step (no seams). Fewer tiles at small octaves. 1 = the whole image "
                           "as one 28×28 view.", low=1)
    seed: int = param(0, "Seed of the random tile rolls (per map).", low=0)
    contrast_width: float = param(0.2, "Value width of the last panel: (x − mean)/std · width + 0.5, clipped to [0, 1].",
                                  low=0.001)
    maps_per_shard: int = param(8, "At most this many dreams per shard (one batch on an actor).", low=1)
    pixels: np.ndarray = field(init=False, compare=False, repr=False)
    image_name: str = field(init=False)

    name = "dream"
    needs_model = True
    needs_data = False

    def __post_init__(self):
        check_params(self)
        chosen = [flag for flag, value in (("--map", self.map_id), ("--maps", self.maps), ("--objective", self.objective))
                  if value is not None]
        if len(chosen) > 1:
            raise BadParameter("map_id", f"use only one of --map, --maps, --objective (got {' and '.join(chosen)})")
        if not chosen:
            object.__setattr__(self, "map_id", DEFAULT_MAP)
        if self.map_id is not None:
            check_maps((self.map_id,), self.layer, "map_id")
        if self.maps is not None:
            object.__setattr__(self, "maps", check_maps(self.maps, self.layer))
        pixels, image_name = load_image(self.image, self.size)
        object.__setattr__(self, "pixels", pixels)
        object.__setattr__(self, "image_name", image_name)
        octave_sizes(self.size, self.size, self.octaves, self.octave_scale)
        check_tile_grid(self.tile_grid, self.size, self.size)

    @property
    def carving(self) -> bool:
        """True for the part-I algorithm: one scale, the whole image as one 28×28 view."""
        return self.octaves == 1 and self.tile_grid == 1

    def params(self) -> dict:
        params = spec_params(self, exclude=("pixels", "image", "objective"))
        params["objective"] = objective_text(self.objective) if self.objective is not None else None
        params["image_checksum"] = image_checksum(self.pixels)
        return params

    def dreams(self) -> list[tuple[int, tuple[Term, ...]]]:
        """(map or -1, objective terms) of every dream of the job."""
        if self.objective is not None:
            return [(-1, tuple(self.objective))]
        maps = self.maps if self.maps is not None else (self.map_id,)
        return [(m, (Term(self.layer, m, 1.0),)) for m in maps]

    def dream_seed(self, map_id: int) -> tuple[int, ...]:
        """Seed of one dream's random tile rolls."""
        return (self.seed, map_id) if map_id >= 0 else (self.seed,)

    def phases(self) -> list:
        return [DreamPhase(self)]

    def outputs(self, tables: dict[str, pa.Table], locate) -> list[Artifact]:
        return dream_outputs(self, tables["dreams"], locate)


def dreams_per_shard(n_dreams: int, maps_per_shard: int) -> int:
    """Block size: at most ``maps_per_shard``, and small enough for at least 4 shards (two
    actors with two shards in flight each) when there are 4 or more dreams."""
    return max(1, min(maps_per_shard, math.ceil(n_dreams / 4)))


@dataclass(frozen=True)
class DreamPhase(CNNPhase):
    job: DreamJob
    name = "dreams"
    unit = "dreams"
    schema = DREAM_SCHEMA
    must_be_finite = ("losses", "loss_start", "loss_final", "dream", "view_first", "view_last")

    def shards(self, tables) -> list[Shard]:
        dreams = self.job.dreams()
        if self.job.objective is not None:
            return [Shard("objective", tuple(dreams), 1, 1)]
        step = dreams_per_shard(len(dreams), self.job.maps_per_shard)
        blocks = [tuple(dreams[i : i + step]) for i in range(0, len(dreams), step)]
        return [Shard(f"maps-{block[0][0]:04d}-{block[-1][0]:04d}", block, len(block), len(block)) for block in blocks]

    def compute(self, session: ModelSession, block) -> pa.Table:
        job = self.job
        started = time.perf_counter()
        map_ids = [map_id for map_id, _ in block]
        objectives = [terms for _, terms in block]
        ascent = session.ascent(objective_layers(objectives))
        weights = objective_weights(ascent, objectives)  # per layer (N, maps)
        images = np.repeat(to_model_units(job.pixels, session.standardization)[None], len(block), axis=0)
        if job.carving:
            result = carve(ascent, images, weights, job.iterations, job.epochs, job.learning_rate)
        else:
            result = deep_dream(ascent, images, weights, octaves=job.octaves, octave_scale=job.octave_scale,
                                tile_grid=job.tile_grid, iterations=job.iterations, epochs=job.epochs,
                                learning_rate=job.learning_rate, seeds=[job.dream_seed(m) for m in map_ids])
        final_losses = ascent.losses(resize(result.dreams, IMAGE_SIZE, IMAGE_SIZE), weights)
        pixels = to_pixels(result.dreams, session.standardization)  # (N, H, W)
        views = to_pixels(result.views, session.standardization)  # (steps, N, 28, 28)
        n_images, height, width = pixels.shape
        seconds = (time.perf_counter() - started) / n_images
        return pa.table(
            {
                "map": np.asarray(map_ids, np.int32),
                "objective": [objective_text(terms) for terms in objectives],
                "losses": pa.array(list(result.losses.T), pa.list_(pa.float32())),
                "loss_start": result.start_losses,
                "loss_final": final_losses,
                "alive": np.any(result.losses != 0, axis=0),
                "height": np.full(n_images, height, np.int32),
                "width": np.full(n_images, width, np.int32),
                "dream": pa.array(list(pixels.reshape(n_images, -1)), pa.list_(pa.float32())),
                "view_first": pa.FixedSizeListArray.from_arrays(views[0].reshape(-1), 28 * 28),
                "view_last": pa.FixedSizeListArray.from_arrays(views[-1].reshape(-1), 28 * 28),
                "seconds": np.full(n_images, seconds, np.float32),
            },
            schema=DREAM_SCHEMA,
        )


# ----- outputs (driver side) ----------------------------------------------------------------
def dream_stem(map_id: int) -> str:
    return f"map{map_id:04d}" if map_id >= 0 else "objective"


def dream_images(table: pa.Table, column: str, height: int, width: int) -> np.ndarray:
    """A list<float32> image column of the dreams table as float32 (rows, height, width)."""
    values = table.column(column).combine_chunks().flatten().to_numpy(zero_copy_only=False)
    return values.astype(np.float32, copy=False).reshape(table.num_rows, height, width)


def dream_panels(job: DreamJob, dream: np.ndarray, first: np.ndarray, last: np.ndarray, steps: int) -> list[Panel]:
    """The six panels of algorithms.md §4 for one dream: dream (H, W) and the 28×28 views
    after the first and the last of ``steps`` steps, all gray pixels."""
    from jobs.figures import Panel, value_width_adjusted
    height, width = dream.shape
    what = "28×28 OIP" if job.carving else "28×28 view"
    return [
        Panel(first, f"{what}, step 1", "viridis"),
        Panel(last, f"{what}, step {steps}", "viridis"),
        Panel(last, f"{what}, step {steps}, gray"),
        Panel(resize(last[None], height, width)[0], "upscaled (blurry) dream", vmin=0.0, vmax=1.0),
        Panel(dream, "dream with details", vmin=0.0, vmax=1.0),
        Panel(value_width_adjusted(dream, job.contrast_width), f"value width {job.contrast_width:g}", vmin=0.0, vmax=1.0),
    ]


def describe(job: DreamJob) -> str:
    """One line naming the algorithm and its parameters (figure titles)."""
    how = f"{job.iterations} iterations × {job.epochs} epochs, η {job.learning_rate:g}"
    if job.octaves > 1:
        how += f", {job.octaves} octaves × {job.octave_scale:g}"
    if job.tile_grid > 1:
        how += f", {job.tile_grid}×{job.tile_grid} tiles"
    return f"{job.image_name}: {how}"


def dream_outputs(job: DreamJob, table: pa.Table, locate: Callable[[str], str]) -> list[Artifact]:
    """PNGs of every dream (and panels / a contact sheet), then ``summary.parquet``, which
    names where each PNG is (``locate``). In that order: panels and sheet, the summary,
    then the dream PNGs."""
    from jobs.figures import Panel, gray_png, image_sheet

    rows = table.drop_columns(["dream", "view_first", "view_last"]).to_pylist()  # the small columns
    height, width = np.shape(job.pixels)
    dreams = dream_images(table, "dream", height, width)  # (N, H, W)
    firsts, lasts = dream_images(table, "view_first", 28, 28), dream_images(table, "view_last", 28, 28)
    dream_pngs, panel_pngs, figures = [], [], []
    for index, row in enumerate(rows):
        stem = dream_stem(row["map"])
        dream_pngs.append(Artifact(f"dream-{stem}.png", gray_png(dreams[index])))
        panel_pngs.append(None)
        if len(rows) <= MAX_PANEL_ROWS:
            panels = dream_panels(job, dreams[index], firsts[index], lasts[index], len(row["losses"]))
            panel_pngs[-1] = Artifact(f"panels-{stem}.png", image_sheet(
                panels, columns=6, inches=2.4, suptitle=f"{row['objective']} — {describe(job)}", title_size=8))
            figures.append(panel_pngs[-1])
    sheet = None
    if len(rows) > 1:
        thumbnails = resize(dreams, min(THUMBNAIL, height), min(THUMBNAIL, width))
        panels = [Panel(thumb, f"{row['map']}: {row['loss_final']:.3g}" + ("" if row["alive"] else " dead"), vmin=0.0, vmax=1.0)
                  for thumb, row in zip(thumbnails, rows)]
        sheet = Artifact("contact-sheet.png", image_sheet(
            panels, columns=16, suptitle=f"dreams of {job.layer} maps (title: map: loss of the 28×28 dream) — {describe(job)}"))
        figures.append(sheet)
    summary = dream_summary(job, rows, [locate(a.name) for a in dream_pngs],
                            [locate(a.name) if a else None for a in panel_pngs], locate(sheet.name) if sheet else None)
    return figures + [Artifact(SUMMARY, summary)] + dream_pngs


def dream_summary(job: DreamJob, rows: list[dict], dream_pngs: list[str], panels_pngs: list[str | None],
                  sheet_png: str | None) -> pa.Table:
    """``summary.parquet``: one row per dream with its parameters, losses and where its PNGs are."""
    params = job.params()
    n_rows = len(rows)
    columns = {
        "map": pa.array([row["map"] for row in rows], pa.int32()),
        "objective": [row["objective"] for row in rows],
        "image": [job.image_name] * n_rows,
        "image_checksum": [params["image_checksum"]] * n_rows,
        "height": pa.array([row["height"] for row in rows], pa.int32()),
        "width": pa.array([row["width"] for row in rows], pa.int32()),
        "iterations": pa.array([job.iterations] * n_rows, pa.int32()),
        "epochs": pa.array([job.epochs] * n_rows, pa.int32()),
        "learning_rate": pa.array([job.learning_rate] * n_rows, pa.float32()),
        "octaves": pa.array([job.octaves] * n_rows, pa.int32()),
        "octave_scale": pa.array([job.octave_scale] * n_rows, pa.float32()),
        "tile_grid": pa.array([job.tile_grid] * n_rows, pa.int32()),
        "seed": pa.array([job.seed] * n_rows, pa.int64()),
        "losses": pa.array([row["losses"] for row in rows], pa.list_(pa.float32())),
        "loss_start": pa.array([row["loss_start"] for row in rows], pa.float32()),
        "loss_final": pa.array([row["loss_final"] for row in rows], pa.float32()),
        "alive": pa.array([row["alive"] for row in rows], pa.bool_()),
        "seconds": pa.array([row["seconds"] for row in rows], pa.float32()),
        "dream_png": dream_pngs,
        "panels_png": panels_pngs,
        "contact_sheet_png": [sheet_png] * n_rows,
    }
    return pa.table(columns)
