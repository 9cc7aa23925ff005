"""Nothing is written outside --out: temp files are created exclusively under unique names,
renamed over links (never through them), and links in place of folders are refused or
replaced."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pytest

from cluster.store import RunStore
from core.errors import BadInput
from jobs.files import atomic_file, atomic_path, atomic_symlink, atomic_write_bytes

PART = SimpleNamespace(shard_id="a", n_rows=2)  # what the store reads of a jobs.base.Shard
ROWS = pa.table({"map": pa.array([1, 2], pa.int32())})


@pytest.fixture
def outside(tmp_path):
    """A file and a folder outside the --out folder, which must stay as they are."""
    (tmp_path / "elsewhere").mkdir()
    precious = tmp_path / "elsewhere" / "precious.txt"
    precious.write_text("precious")
    return precious


@pytest.fixture
def store(tmp_path):
    warnings = []
    store = RunStore(tmp_path / "out", "job", "abc123", {}, warn=warnings.append)
    store.warnings = warnings
    store.open(fresh=False)
    yield store
    store.close()


def untouched(outside):
    return outside.read_text() == "precious" and sorted(os.listdir(outside.parent)) == ["precious.txt"]


def test_links_planted_at_the_old_fixed_temp_names_are_never_written_through(store, outside):
    final = store.part_path("scores", PART)
    final.parent.mkdir()
    for name in (f".{final.name}.tmp", ".latest.tmp"):
        folder = final.parent if name.startswith(".part") else store.job_dir
        (folder / name).symlink_to(outside)
    (store.run_dir / ".oips.png.tmp.png").symlink_to(outside)
    (store.run_dir / "._manifest.json.tmp").symlink_to(outside)

    store.write_part("scores", PART, ROWS)
    store.write_manifest({"scores": [PART]}, "done")
    store.mark_success()
    assert untouched(outside)
    assert not final.is_symlink() and pd.read_parquet(final)["map"].tolist() == [1, 2]
    assert os.readlink(store.job_dir / "latest") == "abc123"
    assert store.open(fresh=False) == 1 and not (store.run_dir / ".oips.png.tmp.png").is_symlink()  # cleaned up


@pytest.mark.parametrize("name", ["part", "_manifest.json", "_SUCCESS"])
def test_a_link_at_a_final_path_is_replaced_never_followed(store, outside, name):
    path = store.part_path("scores", PART) if name == "part" else store.run_dir / name
    path.parent.mkdir(exist_ok=True)
    path.symlink_to(outside)
    store.write_part("scores", PART, ROWS)
    store.write_manifest({"scores": [PART]}, "done")
    store.mark_success()
    assert untouched(outside) and not path.is_symlink() and path.is_file()


def test_a_part_that_is_a_link_is_not_reused(store, outside):
    store.write_part("scores", PART, ROWS)
    part = store.part_path("scores", PART)
    copy = outside.parent / "copy.parquet"
    copy.write_bytes(part.read_bytes())  # the very bytes committed, but behind a link
    part.unlink()
    part.symlink_to(copy)
    assert not store.is_done("scores", PART)
    assert len(store.warnings) == 1 and "symbolic link" in store.warnings[0]
    assert copy.is_file() and not os.path.lexists(part)  # the link went, not its target


@pytest.mark.parametrize("folder", ["scores", "_commits"])
def test_a_link_in_place_of_a_folder_in_the_run_is_replaced(store, outside, folder):
    (store.run_dir / folder).symlink_to(outside.parent, target_is_directory=True)
    store.write_part("scores", PART, ROWS)
    assert untouched(outside)
    assert not (store.run_dir / folder).is_symlink() and store.is_done("scores", PART)
    assert len(store.warnings) == 1 and f"{folder} was a link" in store.warnings[0]
    assert pd.read_parquet(store.phase_dir("scores"))["map"].tolist() == [1, 2]


@pytest.mark.parametrize("linked", ["job", "run"])
def test_a_job_or_run_folder_that_is_a_link_is_refused(tmp_path, outside, linked):
    out = tmp_path / "out"
    link = out / "job" / "abc123" if linked == "run" else out / "job"
    link.parent.mkdir(parents=True)
    link.symlink_to(outside.parent, target_is_directory=True)
    store = RunStore(out, "job", "abc123", {})
    for fresh in (False, True):
        with pytest.raises(BadInput, match="is a symbolic link"):
            store.open(fresh=fresh)
    assert untouched(outside) and link.is_symlink()


def test_atomic_writers_leave_the_target_whole_or_untouched(tmp_path, outside):
    target = tmp_path / "figure.png"
    atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), atomic_file(target) as file:
        file.write(b"half")
        raise RuntimeError
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".") and temporary.suffix == ".png"
        temporary.write_bytes(b"half")
        raise RuntimeError
    assert target.read_bytes() == b"old" and sorted(os.listdir(tmp_path)) == ["elsewhere", "figure.png"]
    with atomic_path(target) as temporary:
        temporary.write_bytes(b"new")
    target.unlink()
    target.symlink_to(outside)
    atomic_write_bytes(target, b"newer")
    assert target.read_bytes() == b"newer" and not target.is_symlink() and untouched(outside)
    atomic_symlink(tmp_path / "latest", "figure.png")
    atomic_symlink(tmp_path / "latest", "elsewhere")
    assert os.readlink(tmp_path / "latest") == "elsewhere"
    assert sorted(os.listdir(tmp_path)) == ["elsewhere", "figure.png", "latest"]


def test_a_temp_path_swapped_for_a_link_is_never_published(tmp_path, outside):
    target = tmp_path / "figure.png"
    with pytest.raises(OSError, match="replaced by a link"), atomic_path(target) as temporary:
        temporary.unlink()
        temporary.symlink_to(outside)
    assert not os.path.lexists(target) and untouched(outside)
