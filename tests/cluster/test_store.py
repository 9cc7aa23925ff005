"""The result store: complete parts only, validated on resume, readable by pandas."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cluster.store import PartChanged, RunStore, read_run_metadata
from jobs.base import Shard
from tests.support.run_files import commit_path, part_path, phase_dir, run_dir

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
    data = part_path(store, "scores", broken).read_bytes()
    part_path(store, "scores", broken).write_bytes(data[: len(data) // 2])  # a torn write
    assert store.is_done("scores", good)
    assert not store.is_done("scores", Shard("a", None, 5, 5))  # wrong row count
    assert not store.is_done("scores", broken)
    assert not store.is_done("scores", missing)


def test_a_part_with_the_wrong_row_count_is_refused(store):
    with pytest.raises(RuntimeError, match="returned 3 rows, expected 4"):
        store.write_part("scores", Shard("x", None, 4, 4), table(3))
    assert not list(phase_dir(store, "scores").glob("*"))


def test_pandas_reads_the_phase_folder_and_the_metadata(store):
    shards = [Shard(f"s{i}", None, 4, 4) for i in range(3)]
    for i, shard in enumerate(shards):
        store.write_part("scores", shard, table(4, offset=4 * i))
    (phase_dir(store, "scores") / ".part-s9.parquet.tmp").write_bytes(b"half a file")  # an interrupted write
    frame = pd.read_parquet(phase_dir(store, "scores"))
    assert sorted(frame["map"]) == list(range(12))
    assert store.read_phase("scores", shards, SCHEMA).num_rows == 12
    metadata = read_run_metadata(part_path(store, "scores", shards[0]))
    assert metadata["params"] == {"grid": 3} and metadata["run_id"] == "abc123" and metadata["phase"] == "scores"


def test_success_and_latest_link_and_fresh(store, tmp_path):
    store.write_manifest({"scores": [Shard("s0", None, 4, 4)]}, "done")
    store.mark_success()
    assert store.succeeded and (tmp_path / "job" / "latest").resolve() == run_dir(store).resolve()
    store.write_part("scores", Shard("s0", None, 4, 4), table(4))
    assert store.open(fresh=False) == 1 and not store.succeeded  # a rerun: parts kept, success pending
    assert store.open(fresh=True) == 0


# ----- verified resume: a part is reused only when its commit record vouches for it --------

A, B = Shard("a", None, 4, 4), Shard("b", None, 4, 4)


def flip_a_data_page(path):
    """Corrupt bytes inside the first column's data, leaving the footer intact."""
    column = pq.read_metadata(path).row_group(0).column(0)
    data = bytearray(path.read_bytes())
    middle = column.data_page_offset + column.total_compressed_size // 2
    for i in range(middle - 2, middle + 2):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))
    assert pq.read_metadata(path).num_rows == 4  # the footer still reads: a footer check passes it


def copy_a_over_b(store):
    part_path(store, "scores", B).write_bytes(part_path(store, "scores", A).read_bytes())


def copy_a_with_its_record_over_b(store):
    copy_a_over_b(store)
    commit_path(store, "scores", B).write_bytes(commit_path(store, "scores", A).read_bytes())


def edit_a_value(store):
    path = part_path(store, "scores", B)
    edited = pq.read_table(path)
    pq.write_table(edited.set_column(1, "loss", pa.array([9.0] * 4, pa.float32())).replace_schema_metadata(
        edited.schema.metadata), path)


TAMPERINGS = {
    "another shard's valid part copied over it": (copy_a_over_b, "content changed since its commit"),
    "another shard's part and record copied over it": (copy_a_with_its_record_over_b, "names shard 'a', not 'b'"),
    "a corrupt data page behind an intact footer": (lambda store: flip_a_data_page(part_path(store, "scores", B)),
                                                    "content changed since its commit"),
    "an edited part (valid Parquet)": (edit_a_value, "content changed since its commit"),
    "a torn part": (lambda store: part_path(store, "scores", B).write_bytes(b"PAR1 half"), "content changed"),
    "a part missing from the record": (lambda store: commit_path(store, "scores", B).unlink(), "has no commit record"),
    "an unreadable record": (lambda store: commit_path(store, "scores", B).write_text("{"), "record is unreadable"),
    "a deleted part": (lambda store: part_path(store, "scores", B).unlink(), "is missing"),
}


@pytest.mark.parametrize("tampering", TAMPERINGS, ids=list(TAMPERINGS))
def test_a_part_that_is_not_what_was_committed_is_recomputed_with_one_warning(tmp_path, tampering):
    tamper, reason = TAMPERINGS[tampering]
    warnings = []
    store = RunStore(tmp_path, "job", "abc123", {}, warn=warnings.append)
    store.open(fresh=False)
    store.write_part("scores", A, table(4))
    store.write_part("scores", B, table(4, offset=100))
    tamper(store)

    assert store.is_done("scores", A)
    assert not store.is_done("scores", B)
    assert len(warnings) == 1 and "scores/part-b.parquet" in warnings[0] and reason in warnings[0], warnings
    assert not part_path(store, "scores", B).exists()  # gone until recomputed: no stray rows for pandas
    store.write_part("scores", B, table(4, offset=100))  # the rerun recomputes it
    assert store.is_done("scores", B) and len(warnings) == 1
    assert store.read_phase("scores", [A, B], SCHEMA)["map"].to_pylist() == [0, 1, 2, 3, 100, 101, 102, 103]


def test_a_shard_never_written_is_not_done_and_not_warned_about(store):
    warnings = []
    store.warn = warnings.append
    assert not store.is_done("scores", A) and warnings == []


def test_reading_a_phase_refuses_a_part_changed_after_its_commit(store):
    store.write_part("scores", A, table(4))
    store.write_part("scores", B, table(4, offset=100))
    copy_a_over_b(store)
    with pytest.raises(PartChanged, match="part-b.parquet: its content changed since its commit"):
        store.read_phase("scores", [A, B], SCHEMA)


def run(store, shards, computed, fail_at=None):
    """The runner's loop over one phase: resume, compute what is missing, read, succeed."""
    store.open(fresh=False)
    try:
        for shard in shards:
            if not store.is_done("scores", shard):
                if shard.shard_id == fail_at:
                    raise KeyboardInterrupt
                computed.append(shard.shard_id)
                store.write_part("scores", shard, table(4, offset=100 * int(shard.shard_id[1:])))
        result = store.read_phase("scores", shards, SCHEMA)
        store.mark_success()
        return result
    finally:
        store.close()


def test_a_rerun_heals_a_tampered_run_and_latest_moves_only_on_success(tmp_path):
    shards = [Shard(f"s{i}", None, 4, 4) for i in range(4)]
    first = RunStore(tmp_path, "job", "first", {})
    reference = run(first, shards, [])
    latest = tmp_path / "job" / "latest"
    assert latest.resolve() == run_dir(first).resolve()

    second = RunStore(tmp_path, "job", "second", {})
    computed = []
    with pytest.raises(KeyboardInterrupt):
        run(second, shards, computed, fail_at="s2")
    assert computed == ["s0", "s1"] and latest.resolve() == run_dir(first).resolve()  # not finished: not latest
    copy = part_path(second, "scores", shards[0]).read_bytes()
    part_path(second, "scores", shards[1]).write_bytes(copy)  # s0's part over s1's

    computed.clear()
    assert run(second, shards, computed).equals(reference)
    assert computed == ["s1", "s2", "s3"] and latest.resolve() == run_dir(second).resolve()
    assert (run_dir(second) / "_SUCCESS").exists()


def test_commit_records_stay_out_of_readers_way(store):
    shards = [Shard(f"s{i}", None, 4, 4) for i in range(3)]
    for i, shard in enumerate(shards):
        store.write_part("scores", shard, table(4, offset=4 * i))
    assert sorted(p.name for p in phase_dir(store, "scores").iterdir()) == [f"part-s{i}.parquet" for i in range(3)]
    assert commit_path(store, "scores", shards[0]).is_file()
    assert sorted(pd.read_parquet(phase_dir(store, "scores"))["map"]) == list(range(12))


def test_a_later_phase_built_from_other_parts_is_recomputed(tmp_path):
    """A phase-2 part records the digest of the phase-1 parts it was built from: when a
    phase-1 part is recomputed (here: with other rows), the phase-2 parts are recomputed too."""
    first, second = Shard("a", None, 4, 4), Shard("all", None, 4, 4)

    def rerun(offset: int, warnings: list) -> bool:
        with RunStore(tmp_path, "job", "abc123", {}, warn=warnings.append) as store:
            store.open(fresh=False)
            if not store.is_done("scores", first):
                store.write_part("scores", first, table(4, offset))
            store.read_phase("scores", [first], SCHEMA)
            reused = store.is_done("oips", second)
            if not reused:
                store.write_part("oips", second, table(4))
            return reused

    warnings: list = []
    assert not rerun(0, warnings) and rerun(0, warnings) and warnings == []
    part_path(RunStore(tmp_path, "job", "abc123", {}), "scores", first).unlink()  # phase 1 recomputed ...
    assert not rerun(100, warnings)  # ... with other rows: phase 2 is not reused
    assert "oips/part-all.parquet: was built from other parts of the earlier phases" in warnings[-1]
