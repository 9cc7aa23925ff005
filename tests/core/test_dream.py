"""Deep dreams (algorithms.md §4): carving raises the map's activation, detail re-injection is
lossless, tiles leave no seams, bad input exits 2, and the job runs, writes and resumes."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from core.errors import BadInput


# ----- helpers and fixtures -------------------------------------------------------------------
@pytest.fixture(scope="module")
def conv3(trained_model):
    from core.ascent import Ascent

    model, _ = trained_model
    return Ascent(model, ["conv3"])


@pytest.fixture(scope="module")
def standardization(trained_model):
    from core.model import Standardization

    return Standardization(**trained_model[1]["standardization"])


def flower(standardization, height: int, width: int | None = None) -> np.ndarray:
    """The default photo in model units, float32 (1, height, width)."""
    from core.dream import resize, to_model_units
    from jobs.dream import load_image

    pixels, _ = load_image(None, height)
    if width is not None:
        pixels = resize(pixels[None], height, width)[0]
    return to_model_units(pixels, standardization)[None]


def alive_map(ascent, small: np.ndarray) -> int:
    """Map 56 if it responds to the 28×28 image (1, 28, 28), else the first map that does."""
    activations = ascent.losses(np.repeat(small, 128, axis=0), ascent.map_objective("conv3", np.arange(128)))
    return 56 if activations[56] > 0 else int(np.flatnonzero(activations > 0)[0])


def seam_ratios(change: np.ndarray, grid: int, band: int = 3) -> tuple[float, float]:
    """For a dream's change (H, W) on a grid×grid tiling: (gradient energy across the tile
    borders ÷ elsewhere, change energy within ``band`` px of the borders ÷ elsewhere).
    A seam is a jump (first ratio high) or an undreamt line (second ratio low)."""
    grad_on, grad_off, amp_on, amp_off = [], [], [], []
    for axis in (0, 1):
        size = change.shape[axis]
        borders = [round(k * size / grid) for k in range(1, grid)]
        gradient = np.moveaxis(np.diff(change, axis=axis) ** 2, axis, 0)  # row j: change[j+1] − change[j]
        across = np.zeros(size - 1, bool)
        across[[b - 1 for b in borders]] = True
        grad_on.append(gradient[across].mean())
        grad_off.append(gradient[~across].mean())
        energy = np.moveaxis(change**2, axis, 0)
        near = np.zeros(size, bool)
        for b in borders:
            near[b - band : b + band] = True
        amp_on.append(energy[near].mean())
        amp_off.append(energy[~near].mean())
    return float(np.mean(grad_on) / np.mean(grad_off)), float(np.mean(amp_on) / np.mean(amp_off))


# ----- core: the math -------------------------------------------------------------------------
def test_one_carving_iteration_raises_the_maps_activation(conv3, standardization):
    from core.dream import carve, resize

    image = flower(standardization, 168)
    target = alive_map(conv3, resize(image, 28, 28))
    weights = conv3.map_objective("conv3", [target])
    before = conv3.losses(resize(image, 28, 28), weights)[0]
    result = carve(conv3, image, weights, iterations=1, epochs=20)
    after = conv3.losses(resize(result.dreams, 28, 28), weights)[0]
    assert result.dreams.shape == image.shape
    assert result.start_losses[0] == pytest.approx(before)
    assert before > 0 and after > 1.5 * before  # the 28×28 version of the dream excites the map more
    assert result.losses[0, 0] > before  # and so did the ascent's own 28×28 output


def test_zero_epochs_give_back_the_image(conv3, standardization):
    """Carving and the general dream (octaves, rolled tiles) re-inject exactly the detail the
    downscaling lost: without ascent steps the dream is the original image."""
    from core.dream import carve, deep_dream, resize, split_detail

    image = flower(standardization, 140, 168)
    small, detail = split_detail(image)
    np.testing.assert_allclose(resize(small, 140, 168) + detail, image, atol=1e-5)
    weights = conv3.map_objective("conv3", [56])
    carved = carve(conv3, image, weights, iterations=3, epochs=0)
    np.testing.assert_allclose(carved.dreams, image, atol=1e-4)
    dreamt = deep_dream(conv3, image, weights, octaves=3, octave_scale=1.4, tile_grid=2, iterations=2, epochs=0, seeds=[7])
    np.testing.assert_allclose(dreamt.dreams, image, atol=1e-4)
    assert np.abs(image).max() > 1  # the tolerance is small against the image's values


def test_tiled_dream_keeps_the_size_and_shows_no_seams(conv3, standardization):
    from core.dream import deep_dream

    image = flower(standardization, 224, 280)  # 4×4 tiles of 56×70 px
    weights = conv3.map_objective("conv3", [56])
    rolled = deep_dream(conv3, image, weights, tile_grid=4, iterations=4, epochs=20, seeds=[0])
    assert rolled.dreams.shape == image.shape and rolled.losses.shape == (4, 1)
    jump, coverage = seam_ratios(rolled.dreams[0] - image[0], 4)
    assert jump < 1.5 and coverage > 0.5, (jump, coverage)
    # The same measure sees the seams of a fixed grid (tile edges stay undreamt):
    fixed = deep_dream(conv3, image, weights, tile_grid=4, iterations=4, epochs=20, roll=False)
    assert seam_ratios(fixed.dreams[0] - image[0], 4)[1] < 0.3


def test_roll_is_undone_exactly():
    from core.dream import roll_each, roll_shifts

    rng = np.random.default_rng(1)
    images = rng.normal(size=(3, 50, 70)).astype(np.float32)
    shifts = np.stack([roll_shifts(np.random.default_rng(i), 4, 5, 50, 70)[0] for i in range(3)])
    np.testing.assert_array_equal(roll_each(roll_each(images, shifts), -shifts), images)
    steps = roll_shifts(np.random.default_rng(0), 4, 5, 50, 70)  # 4 steps, tiles of 10×14 px
    assert len({int(s) % 10 // 3 for s in steps[:, 0]}) >= 3  # stratified: borders spread over the tile


def test_weighted_objective_is_the_weighted_sum_of_its_terms(trained_model, standardization):
    from core.ascent import Ascent
    from core.dream import Term, objective_weights, resize

    ascent = Ascent(trained_model[0], ["conv2", "conv3"])
    small = resize(flower(standardization, 56), 28, 28)
    terms = (Term("conv3", 56, 1.0), Term("conv3", 12, 0.5), Term("conv2", None, 0.2))
    mixed = ascent.losses(small, objective_weights(ascent, [terms]))[0]
    parts = [ascent.losses(small, objective_weights(ascent, [(Term(t.layer, t.map, 1.0),)]))[0] for t in terms]
    assert mixed == pytest.approx(1.0 * parts[0] + 0.5 * parts[1] + 0.2 * parts[2], rel=1e-5)
    whole_layer = objective_weights(ascent, [(Term("conv2", None, 0.2),)])
    np.testing.assert_allclose(whole_layer[0], np.full((1, 64), 0.2 / 64, np.float32))
    with pytest.raises(BadInput, match="zero weights"):
        objective_weights(ascent, [(Term("conv3", 1, 0.0),)])
    with pytest.raises(BadInput, match="out of range"):
        objective_weights(ascent, [(Term("conv3", 128, 1.0),)])


def test_a_dream_does_not_depend_on_its_batch(conv3, standardization):
    from core.dream import deep_dream

    image = flower(standardization, 112)
    maps = [3, 56]
    batch = deep_dream(conv3, np.repeat(image, 2, axis=0), conv3.map_objective("conv3", maps), tile_grid=2,
                       iterations=2, epochs=10, seeds=[(0, m) for m in maps])
    alone = deep_dream(conv3, image, conv3.map_objective("conv3", [56]), tile_grid=2, iterations=2, epochs=10,
                       seeds=[(0, 56)])
    np.testing.assert_allclose(batch.dreams[1], alone.dreams[0], atol=1e-3)


# ----- CLI: bad input exits 2 with one line ------------------------------------------------------
def _bad_files(tmp_path):
    from PIL import Image

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((20, 40), np.uint8)).save(tiny)
    return text, tiny


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "/no/such/photo.jpg"], "no file at /no/such/photo.jpg"),
        (["--image", "{text}"], "is not an image"),
        (["--image", "{tiny}"], "40x20 px; the CNN needs at least 28x28"),
        (["--layer", "conv9"], "--layer: 'conv9' is not one of"),
        (["--map", "128"], "map 128 is out of range: conv3 has maps 0-127"),
        (["--maps", "0-200"], "map 128 is out of range"),
        (["--objective", "conv3:x=1"], "cannot read the term 'conv3:x=1'"),
        (["--objective", "conv3:56=1,,conv2"], "--objective: cannot read"),
        (["--objective", "conv7:3=1"], "unknown layer 'conv7'"),
        (["--objective", "conv3:56=0,conv2=0"], "all weights are 0"),
        (["--map", "5", "--maps", "all"], "only one of --map, --maps, --objective"),
        (["--tile-grid", "30", "--size", "560"], "tiles must be at least 28x28"),
        (["--octaves", "9", "--size", "112"], "below the CNN's 28x28"),
        (["--size", "10"], "--size"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, capsys, tmp_path, args, message):
    text, tiny = _bad_files(tmp_path)
    args = [arg.format(text=text, tiny=tiny) for arg in args]
    code = cli("dream", *args, "--model", tmp_path / "no-model.keras", "--out", tmp_path / "out")
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert "Traceback" not in captured.err


# ----- the job through Ray -----------------------------------------------------------------------
def test_dream_maps_job_writes_outputs_and_resumes(cli, capsys, ray_local, trained_model_path, tmp_path):
    from PIL import Image

    args = ["dream", "--maps", "3,56", "--size", "112", "--iterations", "2", "--epochs", "5",
            "--model", trained_model_path, "--out", tmp_path / "out"]
    assert cli(*args) == 0
    first = capsys.readouterr().out
    run_dir = tmp_path / "out" / "dream" / "latest"
    summary = pq.read_table(run_dir / "summary.parquet").to_pandas()
    assert summary["map"].tolist() == [3, 56]
    assert all(len(losses) == 2 for losses in summary["losses"])
    assert (summary["height"] == 112).all() and (summary["image"] == "flower.jpg").all()
    for column in ("dream_png", "panels_png", "contact_sheet_png"):
        assert all(Image.open(path).size[0] > 0 for path in summary[column])
    assert Image.open(summary["dream_png"][0]).size == (112, 112)
    parts = sorted((run_dir / "dreams").glob("part-*.parquet"))
    assert len(parts) == 2  # two shards: both actors get work
    dreams = pq.read_table(run_dir / "dreams").to_pandas()
    assert len(dreams) == 2 and len(dreams["dream"][0]) == 112 * 112
    stamps = [part.stat().st_mtime_ns for part in parts]

    assert cli(*args) == 0  # same parameters: everything is reused
    assert "2 of 2 shards reused" in capsys.readouterr().out
    assert [part.stat().st_mtime_ns for part in parts] == stamps
    assert "results:" in first


@pytest.mark.slow  # ~16 s: a second actor pool; the fast tests cover its math in-process
def test_weighted_tiled_dream_job(cli, capsys, ray_local, trained_model_path, tmp_path):
    args = ["dream", "--objective", "conv3:56=1,conv2=0.5", "--size", "112", "--iterations", "2", "--epochs", "5",
            "--octaves", "2", "--tile-grid", "2", "--model", trained_model_path, "--out", tmp_path / "out"]
    assert cli(*args) == 0
    summary = pq.read_table(tmp_path / "out" / "dream" / "latest" / "summary.parquet").to_pandas()
    assert summary["objective"].tolist() == ["conv3:56=1,conv2=0.5"] and summary["map"].tolist() == [-1]
    assert len(summary["losses"][0]) == 4  # 2 octaves × 2 iterations
    assert summary["contact_sheet_png"].isna().all() and summary["panels_png"].notna().all()
