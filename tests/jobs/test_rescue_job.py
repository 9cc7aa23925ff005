"""jobs.rescue, the experiment behind ``dreamctl experiment rescue`` (issue 13): the runs it plans
(every method from the same starts, the precursor on the maps random starts left dead), the
comparison, bad options (end to end on Ray: tests/end_to_end/test_rescue_experiment.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pytest

from jobs.base import Summary
from jobs.oip import OipJob
from jobs.precursor import PrecursorJob
from jobs.rescue import PRECURSOR, PRECURSOR_EXHAUSTIVE, RANDOM, WARMUPS, RescueExperiment, compare, method_summary
from jobs.train import MODEL_SCHEMA, TrainJob

TINY = dict(seeds=(0, 1), maps=(0, 1, 2), restarts=3, epochs=60, warmup=50, grid=2, test_epochs=1, top=2)
DEAD = {(0, 1), (1, 0), (1, 2)}  # (seed, map) where every random start of the fake runs ends at loss 0


def fake_outcome(step, seed: int) -> SimpleNamespace:
    """What a finished run of ``step`` would hand back: random starts leave DEAD maps dead."""
    job = step.job
    if isinstance(job, TrainJob):
        model = {"seed": seed, "weights": b"\0" * 8, "weights_sha256": "s", "dense_units": 4, "mean": 0.1, "std": 0.3,
                 "train_accuracy": 0.9, "test_accuracy": 0.8 + seed / 100, "epoch_test_accuracy": [0.8],
                 "cpu_seconds": 1.0, "seconds": 1.0}
        tables = {"model": pa.Table.from_pylist([model], schema=MODEL_SCHEMA)}
        return SimpleNamespace(run_id=f"train{seed}", tables=tables, records={}, metadata={"data": {"name": "d"}})
    if isinstance(job, OipJob):
        dead = lambda m: (seed, m) in DEAD and not job.warmup  # noqa: E731
        rows = [{"map": m, "restart": r, "start_loss": 0.0 if dead(m) else 0.5, "loss": 0.0 if dead(m) else 1.0 + m,
                 "alive": not dead(m)} for m in job.maps for r in range(job.restarts)]
        records = {"maps": {"cpu_seconds": 6.0}}
        return SimpleNamespace(run_id=f"oip{seed}{job.warmup_kind if job.warmup else ''}", metadata={},
                               tables={"oips": pa.Table.from_pylist(rows)}, records={"oips": records})
    rows = [{"map": m, "score": 0.5, "loss": 3.0} for m in job.maps for _ in range(job.top)]
    records = {f"map{m}": {"map": m, "image_steps": 100, "cpu_seconds": 2.0} for m in job.maps}
    return SimpleNamespace(run_id=f"pre{seed}{job.exhaustive}", metadata={}, tables={"oips": pa.Table.from_pylist(rows)},
                           records={"scores": records, "oips": {"all": {"cpu_seconds": 1.0}}})


def planned(experiment: RescueExperiment) -> list:
    """Every step the experiment yields, fed with fake outcomes."""
    steps, seen, outcome = experiment.steps(), [], None
    seed = None
    while True:
        try:
            step = steps.send(outcome)
        except StopIteration:
            return seen
        seen.append(step)
        if isinstance(step.job, TrainJob):
            seed = step.job.config.seed
        outcome = fake_outcome(step, seed) if not isinstance(step.job, Summary) else None


def test_the_runs_it_plans_start_every_method_from_the_same_images():
    steps = planned(RescueExperiment(**{**TINY, "exhaustive": True, "test_epochs": 10}))
    kinds = [type(step.job).__name__ for step in steps]
    per_model = ["TrainJob", "OipJob", "OipJob", "OipJob", "PrecursorJob", "PrecursorJob"]
    assert kinds == per_model * 2 + ["Summary"]
    oips = [step.job for step in steps if isinstance(step.job, OipJob)]
    assert {(job.seed, job.restarts, job.epochs, job.maps, job.rescue) for job in oips} == {(0, 3, 60, (0, 1, 2), "none")}
    assert sorted((job.warmup, job.warmup_kind) for job in oips[:3]) == [
        (0, "pre_relu"), (50, "leaky_relu"), (50, "pre_relu")]
    # the precursor runs on the maps every random start of that model left dead, with the CNN it trained
    precursors = [step for step in steps if isinstance(step.job, PrecursorJob)]
    assert [(step.job.maps, step.job.exhaustive) for step in precursors] == [
        ((1,), False), ((1,), True), ((0, 2), False), ((0, 2), True)]
    assert all(step.job.full_epochs == 60 and step.job.top == 2 for step in precursors)
    assert all(step.model is not None and step.model.dense_units == 4 for step in steps[1:6])
    # 1 test epoch: no cut of the pruning acts (the adaptive rule cuts after step 1 at the earliest),
    # so the pruned run is the exhaustive one, run once
    assert [type(step.job).__name__ for step in planned(RescueExperiment(**{**TINY, "exhaustive": True}))].count(
        "PrecursorJob") == 2
    everything = planned(RescueExperiment(**{**TINY, "precursor_maps": "all"}))
    assert [step.job.maps for step in everything if isinstance(step.job, PrecursorJob)] == [(0, 1, 2), (0, 1, 2)]


def test_the_summary_compares_every_method_on_every_map():
    steps = planned(RescueExperiment(**TINY))
    summary = steps[-1].job
    assert summary.params()["runs"]["1/precursor"] == "pre1True"  # its run id follows the runs it compares (1 test epoch: exhaustive)
    models = summary.phases()[0].shards({})[0].payload.to_pandas()
    assert models["test_accuracy"].tolist() == [0.8, 0.81]
    comparison = summary.phases()[1].shards({})[0].payload.to_pandas().set_index(["seed", "map", "method"])
    assert comparison.loc[(0, 1, RANDOM), "random_dead"] and not comparison.loc[(0, 1, RANDOM), "alive"]
    assert comparison.loc[(0, 1, RANDOM), "image_steps"] == 0  # frozen starts are never computed
    assert all(comparison.loc[(0, 1, method), "woken"] for method in (*WARMUPS, PRECURSOR))
    assert comparison.loc[(0, 1, "warmup_pre_relu"), "image_steps"] == 3 * 60
    assert comparison.loc[(0, 1, PRECURSOR), "image_steps"] == 100 + 2 * 60  # phase 1 + phase 2
    assert comparison.loc[(0, 1, PRECURSOR), "ratio_to_best"] == 1.0  # loss 3 beats the warm-ups' 2
    # the CPU seconds of a run are spread over its maps by their image-steps
    assert comparison.xs((0, "warmup_pre_relu"), level=("seed", "method"))["cpu_seconds"].sum() == pytest.approx(6.0)
    summary_of = method_summary(comparison.reset_index()).set_index("method")
    assert summary_of.loc[RANDOM, "woken"] == 0 and summary_of.loc[PRECURSOR, "woken"] == 3
    assert list(summary_of.index) == [RANDOM, *WARMUPS, PRECURSOR]


def test_compare_gives_no_ratio_where_every_method_is_dead():
    runs = pd.DataFrame({"seed": [0, 0], "map": [5, 5], "method": [RANDOM, PRECURSOR_EXHAUSTIVE], "run_id": ["a", "b"],
                         "loss": [0.0, 0.0], "alive": [False, False], "image_steps": [0, 10], "cpu_seconds": [0.0, 1.0]})
    table = compare(runs).to_pandas()
    assert table["ratio_to_best"].isna().all() and table["random_dead"].all() and not table["woken"].any()


def test_bad_options_are_refused():
    from core.errors import BadParameter

    with pytest.raises(BadParameter, match="warmup"):
        RescueExperiment(**{**TINY, "warmup": 61})
    with pytest.raises(BadParameter, match="maps"):
        RescueExperiment(**{**TINY, "maps": (128,)})
