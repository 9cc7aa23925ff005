"""``dreamctl oip`` rescues the maps its random starts leave dead with a warm-up (leaky ReLU
by default; issue 13, docs/rescue.md), and ``--rescue none`` leaves them dead."""

from __future__ import annotations

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


def test_rescue_options_are_checked():
    from core.errors import BadParameter
    from jobs.oip import OipJob

    with pytest.raises(BadParameter, match="rescue_warmup"):
        OipJob(rescue_warmup=0)
    with pytest.raises(BadParameter, match="rescue"):
        OipJob(rescue="warmup")
    assert OipJob(rescue="none").phases()[-1].name == "oips"
    assert [phase.name for phase in OipJob().phases()] == ["oips", "rescued"]
    assert [phase.name for phase in OipJob(warmup=10).phases()] == ["oips"]  # a warm-up run has no rescue
    assert "rescue" not in OipJob(rescue="none").params() and OipJob().params()["rescue_warmup"] == 100
