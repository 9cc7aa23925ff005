"""jobs.oip: the rescue options are checked, and they decide the job's phases and parameters."""

from __future__ import annotations

import pytest


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
