"""Job and Ray options added on the specs: the precursor's --prune / --exhaustive, the OIP
warm-up (--warmup, --warmup-kind) and the actors' --precision."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tests.support.cli_output import one_error_line

from cluster.store import run_id
from jobs.precursor import PrecursorJob


# ----- precursor: --prune and --exhaustive ---------------------------------------------------
def test_prune_text_becomes_the_cuts_that_act():
    job = PrecursorJob(maps="3", prune="2:2048, 5:128")
    assert job.prune == ((2, 2048), (5, 128)) and not job.exhaustive
    # a cut at or after the last test epoch drops nothing: same run as without it
    late = PrecursorJob(maps="3", prune="2:2048,5:128,10:8")
    assert late.prune == job.prune and run_id("precursor", late.params(), None, {}) == run_id(
        "precursor", job.params(), None, {})
    # no cut before the last test epoch, or --exhaustive: the exhaustive run, one run id
    short = PrecursorJob(maps="3", test_epochs=2, prune="2:8")
    forced = PrecursorJob(maps="3", test_epochs=2, exhaustive=True)
    assert short.prune == forced.prune == () and short.exhaustive and forced.exhaustive
    assert short.params() == forced.params()
    assert run_id("precursor", job.params(), None, {}) != run_id(
        "precursor", PrecursorJob(maps="3", prune="2:2048,5:64").params(), None, {})


def test_a_start_cut_early_never_beats_one_that_ran_all_test_epochs():
    import pyarrow as pa

    from jobs.precursor import SCORES_SCHEMA, top_candidates

    # map 0: pattern 0 cut at step 2 with the highest loss, 3 cut at step 5; 1 and 2 survived
    scores = pa.table({"layer": ["conv3"] * 6, "map": [0, 0, 0, 0, 1, 1], "pattern": [0, 1, 2, 3, 0, 1],
                       "loss": [5.0, 1.0, 2.0, 3.0, 1.0, 1.0], "steps": [2, 10, 10, 5, 10, 10]}, schema=SCORES_SCHEMA)

    def chosen(top):
        table = top_candidates(scores, top).to_pydict()
        return [(m, r, p) for m, r, p in zip(table["map"], table["rank"], table["pattern"])]

    assert chosen(2) == [(0, 1, 2), (0, 2, 1), (1, 1, 0), (1, 2, 1)]  # survivors only; ties to the lower index
    # fewer survivors than top: then the starts cut latest, best loss first
    assert chosen(4)[:4] == [(0, 1, 2), (0, 2, 1), (0, 3, 3), (0, 4, 0)]


@pytest.mark.parametrize(
    "prune, message",
    [
        ("x", "--prune: cannot read 'x' (use step:keep pairs"),
        ("2:10:3", "--prune: cannot read '2:10:3'"),
        ("5:10,2:5", "--prune: steps must be >= 1 and increasing, got 5, 2"),
        ("2:5,5:10", "--prune: keep counts must be >= 1 and non-increasing, got 5, 10"),
        ("0:8", "--prune: steps must be >= 1"),
        ("2:0", "--prune: keep counts must be >= 1"),
        ("", "--prune: no cut given"),
    ],
)
def test_bad_prune_exits_2_with_one_line(cli, capsys, prune, message):
    assert cli("precursor", "--maps", "3", "--prune", prune) == 2
    assert message in one_error_line(capsys)


# ----- oip: --warmup ---------------------------------------------------------------------------
def test_bad_warmup_exits_2_with_one_line(cli, capsys):
    assert cli("oip", "--maps", "3", "--epochs", "10", "--warmup", "11") == 2
    assert "--warmup: must be at most the epochs (10), got 11" in one_error_line(capsys)
    assert cli("oip", "--maps", "3", "--warmup-kind", "softplus") == 2
    assert "--warmup-kind: 'softplus' is not one of pre_relu, leaky_relu" in one_error_line(capsys)


def test_warmup_wakes_a_map_that_plain_starts_leave_dead(cli, tmp_path, trained_model, trained_model_path, ray_local):
    """A map whose random starts are all off everywhere stays dead without a warm-up
    (zero gradient) and comes alive with one; W = 0 is the plain ascent."""
    from core.ascent import Ascent
    from core.patterns import SCALE_AMPLITUDES, SCALE_GRIDS
    from jobs.oip import start_images

    model, _ = trained_model
    ascent = Ascent(model, ["conv3"], chunk_size=32)
    starts = np.concatenate([start_images(0, m, 2, SCALE_GRIDS, SCALE_AMPLITUDES) for m in range(128)])
    start_losses = ascent.losses(starts, ascent.map_objective("conv3", np.repeat(np.arange(128), 2))).reshape(128, 2)
    dead_maps = np.flatnonzero((start_losses == 0).all(axis=1))
    assert len(dead_maps), "the test model has no map dead at both starts"
    dead, alive = int(dead_maps[0]), int(np.argmax(start_losses.min(axis=1)))
    maps = f"{min(dead, alive)},{max(dead, alive)}"
    common = ["oip", "--maps", maps, "--epochs", "30", "--restarts", "2", "--actors", "1", "--chunk-size", "32",
              "--model", trained_model_path]

    assert cli(*common, "--out", "plain") == 0
    plain = pd.read_parquet(tmp_path / "plain" / "oip" / "latest" / "oips").sort_values(["map", "restart"])
    assert not plain.loc[plain["map"] == dead, "alive"].any()
    ids = np.repeat([min(dead, alive), max(dead, alive)], 2)
    images = np.concatenate([start_images(0, m, 2, SCALE_GRIDS, SCALE_AMPLITUDES) for m in ids[::2]])
    np.testing.assert_allclose(plain["loss"], ascent.run_maps(images, "conv3", ids, 30).losses, rtol=1e-5)

    assert cli(*common, "--out", "warm", "--warmup", "20") == 0
    warm = pd.read_parquet(tmp_path / "warm" / "oip" / "latest" / "oips")
    assert warm.loc[warm["map"] == dead, "alive"].all()
    assert warm.loc[warm["map"] == dead, "loss"].min() > 0
    params = json.loads((tmp_path / "warm" / "oip" / "latest" / "_manifest.json").read_text())["params"]
    assert (params["warmup"], params["warmup_kind"]) == (20, "pre_relu")


# ----- Ray: --precision reaches the actors --------------------------------------------------------
@pytest.mark.parametrize("precision, tf32", [("float32", False), ("tf32", True)])
def test_precision_reaches_the_actor(cli, monkeypatch, trained_model_path, ray_local, precision, tf32):
    import ray

    import cluster.scheduler

    settings = []
    original_init = cluster.scheduler.ActorPool.__init__

    def ask_the_actors(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        settings.extend(ray.get([actor.settings.remote() for actor in self.actors]))

    monkeypatch.setattr(cluster.scheduler.ActorPool, "__init__", ask_the_actors)
    assert cli("oip", "--maps", "1", "--epochs", "2", "--restarts", "1", "--actors", "1", "--precision", precision,
               "--model", trained_model_path) == 0
    assert len(settings) == 1
    assert settings[0]["precision"] == precision and settings[0]["tf32"] is tf32
    assert settings[0]["cuda_visible_devices"] == ""  # a CPU-only actor sees no GPU
    assert settings[0]["memory_growth"] == {} and settings[0]["threads"] == 1
