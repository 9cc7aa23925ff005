"""``dreamctl oip`` through Ray: a row per map and restart and the grid image; a warm-up
(``--warmup``) wakes a map its plain starts leave dead; ``--precision`` reaches the actors;
the maps its random starts leave dead are rescued with a warm-up (leaky ReLU by default;
issue 13, docs/rescue.md), and ``--rescue none`` leaves them dead."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.patterns import SCALE_AMPLITUDES, SCALE_GRIDS
from jobs.oip import start_images

DEAD_MAP, RESTARTS = 5, 3
OIP = ["oip", "--maps", f"4,{DEAD_MAP}", "--epochs", "150", "--restarts", str(RESTARTS), "--actors", "1",
       "--chunk-size", "32"]


@pytest.fixture(scope="module")
def model_with_a_sleeping_map(tmp_path_factory, trained_model_path):
    """The session's CNN with conv3 map DEAD_MAP shifted so that it is off (negative before its
    ReLU) at every position of every start ``dreamctl oip`` uses for it, by a margin the
    warm-up can climb: dead to plain ascent, not hopeless."""
    from cluster.model_file import load_model, save_model
    from core.ascent import Ascent
    from core.model import Standardization

    model, metadata = load_model(trained_model_path)
    starts = start_images(0, DEAD_MAP, RESTARTS, SCALE_GRIDS, SCALE_AMPLITUDES)
    pre = Ascent(model, ["conv3"])._activations(starts[..., None])[0][0].numpy()[..., DEAD_MAP]
    kernel, bias = model.get_layer("conv3").get_weights()
    bias[DEAD_MAP] -= float(pre.max()) + 0.25 * float(np.abs(pre).max()) + 1e-3
    model.get_layer("conv3").set_weights([kernel, bias])
    pre = Ascent(model, ["conv3"])._activations(starts[..., None])[0][0].numpy()[..., DEAD_MAP]
    assert pre.max() < 0  # off everywhere at every start
    path = tmp_path_factory.mktemp("sleeping-map") / "cnn.keras"
    save_model(model, path, Standardization(**metadata["standardization"]), metadata["data"], metadata["metrics"])
    return path


def test_oip_wakes_the_maps_random_starts_leave_dead(cli, capsys, tmp_path, model_with_a_sleeping_map, ray_local):
    assert cli(*OIP, "--model", model_with_a_sleeping_map) == 0
    stdout = " ".join(capsys.readouterr().out.split())
    run = (tmp_path / "results" / "oip" / "latest").resolve()
    oips = pd.read_parquet(run / "oips")
    assert not oips.loc[oips["map"] == DEAD_MAP, "alive"].any()  # every random start dead
    assert oips.loc[oips["map"] == 4, "alive"].any()
    rescued = pd.read_parquet(run / "rescued")
    assert sorted(rescued["map"]) == [DEAD_MAP] * RESTARTS and sorted(rescued["restart"]) == list(range(RESTARTS))
    assert rescued["alive"].all() and (rescued["loss"] > 0).all()
    assert f"100-step leaky_relu warm-up: {DEAD_MAP} (1 woken)" in stdout and "2 of 2 maps alive" in stdout
    # the pre-ReLU warm-up wakes it too (another rescue: another run)
    assert cli(*OIP, "--model", model_with_a_sleeping_map, "--rescue", "pre_relu") == 0
    assert f"100-step pre_relu warm-up: {DEAD_MAP} (1 woken)" in " ".join(capsys.readouterr().out.split())

    assert cli(*OIP, "--model", model_with_a_sleeping_map, "--rescue", "none") == 0
    stdout = " ".join(capsys.readouterr().out.split())
    assert f"dead maps: {DEAD_MAP}" in stdout
    plain = [p for p in (tmp_path / "results" / "oip").iterdir() if not p.is_symlink() and not (p / "rescued").exists()]
    assert len(plain) == 1
    pd.testing.assert_frame_equal(pd.read_parquet(plain[0] / "oips"), oips)  # the same random-start phase


def test_oip_writes_a_row_per_map_and_restart_and_a_grid(cli, capsys, tmp_path, trained_model_path, ray_local):
    assert cli("oip", "--maps", "0-2,9", "--epochs", "40", "--restarts", "3", "--model", trained_model_path,
               "--out", "oip-out") == 0
    out = capsys.readouterr().out
    assert "maps alive" in out
    folder = tmp_path / "oip-out" / "oip" / "latest"
    frame = pd.read_parquet(folder / "oips")
    assert len(frame) == 4 * 3
    assert sorted(frame["map"].unique()) == [0, 1, 2, 9]
    assert frame.groupby("map")["restart"].apply(sorted).tolist() == [[0, 1, 2]] * 4
    assert frame["loss"].dtype == np.float32 and frame["alive"].dtype == bool
    assert np.stack(frame["image"]).reshape(-1, 28, 28).dtype == np.float32
    assert (frame["alive"] == (frame["loss"] > 0)).all()
    assert (folder / "oips.png").stat().st_size > 10_000


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
