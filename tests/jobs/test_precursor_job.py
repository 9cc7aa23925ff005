"""jobs.precursor: the --prune text becomes the cuts that act (and decides the run id), as
--exhaustive does; a start cut early never beats one that ran all test epochs."""

from __future__ import annotations

from cluster.store import run_id
from jobs.precursor import PrecursorJob


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


def test_an_actor_makes_the_start_images_once_for_all_its_maps(trained_model, monkeypatch):
    import numpy as np

    import jobs.precursor
    from core.defaults import CHUNK_SIZE
    from jobs.base import ModelSession
    from jobs.precursor import ScoresPhase

    made = []
    make = jobs.precursor.precursor_images
    monkeypatch.setattr(jobs.precursor, "precursor_images", lambda *args: made.append(len(args[0])) or make(*args))
    phase = ScoresPhase(PrecursorJob(maps="0-2", grid=2, test_epochs=3, top=2))
    shards = phase.shards({})  # one per map, each all 81 patterns
    session = ModelSession(*trained_model, CHUNK_SIZE)
    tables = [phase.compute(session, shard.payload) for shard in shards]
    assert made == [81]
    # the same scores as from starts made for the shard alone (the work records differ: a
    # fresh actor also runs the layers below conv3 over the starts, a loss pass each)
    for shard, table in zip(shards, tables):
        assert table.equals(phase.compute(ModelSession(*trained_model, CHUNK_SIZE), shard.payload))
        assert np.any(table.column("loss").to_numpy() > 0)
    assert made == [81] * 4
    # another pattern range: made anew; and the kept starts cannot be changed by a caller
    starts = session.made_once(("precursor starts", 2, (0.2, 0.5, 0.8), 0, 80),
                               lambda: jobs.precursor.precursor_images(np.arange(80), 2, (0.2, 0.5, 0.8)))
    assert made == [81] * 4 + [80]
    assert starts.shape == (80, 28, 28) and not starts.flags.writeable
