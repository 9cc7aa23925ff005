"""The result store: complete parts only, validated on resume, readable by pandas."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pytest

from cluster.store import RunStore, read_run_metadata
from jobs.base import Shard

SCHEMA = pa.schema([("map", pa.int32()), ("loss", pa.float32())])


def table(n: int, offset: int = 0) -> pa.Table:
    return pa.table({"map": pa.array(range(offset, offset + n), pa.int32()), "loss": pa.array([0.5] * n, pa.float32())})


@pytest.fixture
def store(tmp_path):
    store = RunStore(tmp_path, "job", "abc123", {"params": {"grid": 3}, "model_hash": "m", "data": {"name": "d"}})
    store.open(fresh=False)
    return store


def test_parts_are_checked_for_footer_and_row_count(store):
    good, broken, missing = (Shard(name, None, 4, 4) for name in ("a", "c", "d"))
    store.write_part("scores", good, table(4))
    store.write_part("scores", broken, table(4))
    data = store.part_path("scores", broken).read_bytes()
    store.part_path("scores", broken).write_bytes(data[: len(data) // 2])  # a torn write
    assert store.is_done("scores", good)
    assert not store.is_done("scores", Shard("a", None, 5, 5))  # wrong row count
    assert not store.is_done("scores", broken)
    assert not store.is_done("scores", missing)


def test_a_part_with_the_wrong_row_count_is_refused(store):
    with pytest.raises(RuntimeError, match="returned 3 rows, expected 4"):
        store.write_part("scores", Shard("x", None, 4, 4), table(3))
    assert not list(store.phase_dir("scores").glob("*"))


def test_pandas_reads_the_phase_folder_and_the_metadata(store):
    shards = [Shard(f"s{i}", None, 4, 4) for i in range(3)]
    for i, shard in enumerate(shards):
        store.write_part("scores", shard, table(4, offset=4 * i))
    (store.phase_dir("scores") / ".part-s9.parquet.tmp").write_bytes(b"half a file")  # an interrupted write
    frame = pd.read_parquet(store.phase_dir("scores"))
    assert sorted(frame["map"]) == list(range(12))
    assert store.read_phase("scores", shards, SCHEMA).num_rows == 12
    metadata = read_run_metadata(store.part_path("scores", shards[0]))
    assert metadata["params"] == {"grid": 3} and metadata["run_id"] == "abc123" and metadata["phase"] == "scores"


def test_success_and_latest_link_and_fresh(store, tmp_path):
    store.write_manifest({"scores": [Shard("s0", None, 4, 4)]}, "done")
    store.mark_success()
    assert store.succeeded and (tmp_path / "job" / "latest").resolve() == store.run_dir.resolve()
    store.write_part("scores", Shard("s0", None, 4, 4), table(4))
    assert store.open(fresh=False) == 1 and not store.succeeded  # a rerun: parts kept, success pending
    assert store.open(fresh=True) == 0
