"""``dreamctl experiment rescue`` (issue 13): the warm-up wakes a map that random starts
leave dead, every method starts from the same images, and the job end to end on Ray."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.patterns import SCALE_AMPLITUDES, SCALE_GRIDS
from jobs.oip import start_images
from jobs.rescue import (PRECURSOR, RANDOM, WARMUPS, RescueExperiment, RunsPhase, compare, method_summary,
                         model_ascent, sha256, weights_from_bytes, weights_to_bytes)

TINY = dict(seeds=(0,), maps=(0, 1), restarts=3, epochs=60, warmup=50, grid=2, test_epochs=3, top=2)


@pytest.fixture(scope="module")
def dead_map_weights():
    """Weights of an untrained dreamctl CNN whose conv3 map 0 is negative before its ReLU at
    every position of every random start of the experiment (its bias far below what any
    start reaches); map 1 is left as it is."""
    import keras

    from core.ascent import Ascent
    from core.model import build_cnn
    from jobs.rescue import random_starts

    keras.utils.set_random_seed(5)
    model = build_cnn(dense_units=4)
    job = RescueExperiment(**TINY)
    images = np.concatenate([random_starts(job, m) for m in job.maps])
    pre = Ascent(model, ["conv3"])._activations(images[..., None])[0][0].numpy()[..., 0]  # (N, 3, 3)
    kernel, bias = model.get_layer("conv3").get_weights()
    bias[0] = bias[0] - 2.0 * float(np.abs(pre).max()) - 1.0
    model.get_layer("conv3").set_weights([kernel, bias])
    return weights_to_bytes(model.get_weights())


def runs_of(job, weights, methods, seed=0):
    phase = RunsPhase(job, "runs", job.methods)
    tables = [phase.compute(None, (method, seed, weights, 4, job.maps)) for method in methods]
    return pd.concat([t.to_pandas() for t in tables], ignore_index=True)


def test_weights_survive_the_round_trip(dead_map_weights):
    weights = weights_from_bytes(dead_map_weights, 4)
    assert weights_to_bytes(weights) == dead_map_weights
    with pytest.raises(ValueError, match="weights stored"):
        weights_from_bytes(dead_map_weights, 5)


def test_warmup_wakes_a_map_random_starts_leave_dead(dead_map_weights):
    job = RescueExperiment(**TINY)
    ascent = model_ascent(dead_map_weights, 4, "conv3")
    starts = start_images(job.start_seed, 0, job.restarts, SCALE_GRIDS, SCALE_AMPLITUDES)
    pre = ascent._activations(starts[..., None])[0][0].numpy()[..., 0]
    assert np.all(pre < 0)  # the crafted map is off everywhere at every start
    runs = runs_of(job, dead_map_weights, (RANDOM, *WARMUPS)).set_index(["method", "map"])
    dead = runs.loc[(RANDOM, 0)]
    assert not dead["alive"] and np.all(np.asarray(dead["start_losses"]) == 0)
    assert dead["image_steps"] == 0  # frozen starts are not computed, so they cost nothing
    for method in WARMUPS:
        woken = runs.loc[(method, 0)]
        assert woken["alive"] and np.all(np.asarray(woken["start_losses"]) > 0), method
        assert woken["image_steps"] == job.restarts * job.epochs
    comparison = compare(runs.reset_index()).to_pandas().set_index(["method", "map"])
    assert comparison.loc[(RANDOM, 0), "random_dead"] and not comparison.loc[(RANDOM, 0), "woken"]
    assert all(comparison.loc[(method, 0), "woken"] for method in WARMUPS)
    assert not comparison.loc[(RANDOM, 1), "random_dead"]  # the untouched map: alive from random starts
    summary = method_summary(comparison.reset_index()).set_index("method")
    assert summary.loc[RANDOM, "woken"] == 0 and all(summary.loc[m, "woken"] == 1 for m in WARMUPS)


def test_every_method_gets_the_same_starts_on_every_model(dead_map_weights):
    """Random starts and warm-ups start from the very images ``dreamctl oip`` would use
    (seeded by (start_seed, map, restart)), whatever the model; the precursor from its
    coarse patterns (best_start is one)."""
    job = RescueExperiment(**TINY)
    other_model = weights_to_bytes([w * 0.5 for w in weights_from_bytes(dead_map_weights, 4)])
    runs = pd.concat([runs_of(job, dead_map_weights, (RANDOM, *WARMUPS, PRECURSOR), seed=0),
                      runs_of(job, other_model, (RANDOM, *WARMUPS), seed=1)], ignore_index=True)
    random_like = runs[runs["method"] != PRECURSOR]
    assert len(random_like) == 2 * 3 * 2  # models × (random + 2 warm-ups) × maps
    for map_id, group in random_like.groupby("map"):
        expected = start_images(job.start_seed, map_id, job.restarts, SCALE_GRIDS, SCALE_AMPLITUDES)
        assert set(group["start_sha256"]) == {sha256(expected.astype(np.float32).tobytes())}
        assert (group["starts"] == job.restarts).all()
    for row in runs[runs["method"] == PRECURSOR].itertuples():
        assert row.starts == job.top and 0 <= row.best_start < 3**4
        assert (row.image_steps > 0) == (row.map == 1)  # on the crafted map every coarse start is frozen too
    # a different start seed gives different starts
    reseeded = runs_of(RescueExperiment(**{**TINY, "start_seed": 1}), dead_map_weights, (RANDOM,))
    assert not set(reseeded["start_sha256"]) & set(random_like["start_sha256"])


def test_by_default_the_precursor_runs_on_the_maps_random_starts_left_dead():
    import pyarrow as pa

    from jobs.rescue import PRECURSOR_RUNS

    job = RescueExperiment(**{**TINY, "seeds": (0, 1), "maps": (0, 1, 2), "exhaustive": True})
    names = [phase.name for phase in job.phases()]
    assert names == ["models", "runs", PRECURSOR_RUNS, "comparison"]
    runs_phase, precursor_phase = job.phases()[1:3]
    assert runs_phase.methods == (RANDOM, *WARMUPS) and precursor_phase.methods == (PRECURSOR, "precursor_exhaustive")
    models = pa.table({"seed": [0, 1], "weights": [b"a", b"b"], "dense_units": [4, 4]})
    dead = {(0, 1), (1, 0), (1, 2)}  # (seed, map) where every random start ended at 0
    runs = pa.table({"seed": [s for s in (0, 1) for _ in range(6)], "method": [RANDOM, "warmup_pre_relu"] * 6,
                     "map": [m for _ in (0, 1) for m in (0, 0, 1, 1, 2, 2)],
                     "alive": [(s, m) not in dead or method != RANDOM for s in (0, 1) for m in (0, 1, 2)
                               for method in (RANDOM, "warmup_pre_relu")]})
    shards = precursor_phase.shards({"models": models, "runs": runs})
    assert sorted((payload[1], payload[4]) for payload in (shard.payload for shard in shards)) == \
        [(0, (1,)), (0, (1,)), (1, (0, 2)), (1, (0, 2))]  # per model, its dead maps, each precursor method
    everything = RescueExperiment(**{**TINY, "precursor_maps": "all"})
    assert [phase.name for phase in everything.phases()] == ["models", "runs", "comparison"]


def test_bad_options_are_refused():
    from core.errors import BadParameter

    with pytest.raises(BadParameter, match="warmup"):
        RescueExperiment(**{**TINY, "warmup": 61})
    with pytest.raises(BadParameter, match="maps"):
        RescueExperiment(**{**TINY, "maps": (128,)})


def test_end_to_end_on_ray_and_resume(cli, ray_local, tmp_path, capsys):
    args = ["experiment", "rescue", "--seeds", "0,1", "--train-epochs", "1", "--maps", "3,7", "--restarts", "2",
            "--epochs", "12", "--warmup", "4", "--grid", "2", "--test-epochs", "3", "--top", "2",
            "--maps-per-shard", "1", "--precursor-maps", "all"]
    assert cli(*args) == 0
    run = next(p for p in (tmp_path / "results" / "rescue").iterdir() if not p.is_symlink())
    assert (run / "_SUCCESS").exists() and (run / "rescue.png").exists()
    models = pd.read_parquet(run / "models")
    assert sorted(models["seed"]) == [0, 1] and models["weights_sha256"].nunique() == 2
    runs = pd.read_parquet(run / "runs")
    assert len(runs) == 2 * 4 * 2  # models × methods × maps
    assert set(runs["method"]) == {RANDOM, *WARMUPS, PRECURSOR}
    for _, group in runs[runs["method"] != PRECURSOR].groupby("map"):
        assert group["start_sha256"].nunique() == 1  # the same starts for every method and model
    assert (runs["cpu_seconds"] >= 0).all() and (runs.groupby("method")["cpu_seconds"].sum() > 0).all()
    comparison = pd.read_parquet(run / "comparison")
    assert len(comparison) == len(runs)
    best = comparison.groupby(["seed", "map"])["ratio_to_best"].max().dropna()
    np.testing.assert_allclose(best, 1.0)
    assert "woken" in capsys.readouterr().out
    assert cli(*args) == 0  # every shard reused
    assert "reused" in capsys.readouterr().out
