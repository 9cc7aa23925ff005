"""Nothing is written outside --out: temp files are created exclusively under unique names,
renamed over links (never through them), and links in place of folders are refused or
replaced."""

from __future__ import annotations

import os
from types import SimpleNamespace

import pandas as pd
import pyarrow as pa
import pytest

from cluster.model_file import atomic_path
from cluster.storage import LocalBackend
from cluster.store import RunStore
from core.errors import BadInput, JobFailed
from tests.support.run_files import part_path, phase_dir, run_dir

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
    final = part_path(store, "scores", PART)
    final.parent.mkdir()
    for name in (f".{final.name}.tmp", ".latest.tmp"):
        folder = final.parent if name.startswith(".part") else run_dir(store).parent
        (folder / name).symlink_to(outside)
    (run_dir(store) / ".oips.png.tmp.png").symlink_to(outside)
    (run_dir(store) / "._manifest.json.tmp").symlink_to(outside)

    store.write_part("scores", PART, ROWS)
    store.write_manifest({"scores": [PART]}, "done")
    store.mark_success()
    assert untouched(outside)
    assert not final.is_symlink() and pd.read_parquet(final)["map"].tolist() == [1, 2]
    assert os.readlink(run_dir(store).parent / "latest") == "abc123"
    assert store.open(fresh=False) == 1 and not (run_dir(store) / ".oips.png.tmp.png").is_symlink()  # cleaned up


@pytest.mark.parametrize("name", ["part", "_manifest.json", "_SUCCESS"])
def test_a_link_at_a_final_path_is_replaced_never_followed(store, outside, name):
    path = part_path(store, "scores", PART) if name == "part" else run_dir(store) / name
    path.parent.mkdir(exist_ok=True)
    path.symlink_to(outside)
    store.write_part("scores", PART, ROWS)
    store.write_manifest({"scores": [PART]}, "done")
    store.mark_success()
    assert untouched(outside) and not path.is_symlink() and path.is_file()


def test_a_part_that_is_a_link_is_not_reused(store, outside):
    store.write_part("scores", PART, ROWS)
    part = part_path(store, "scores", PART)
    copy = outside.parent / "copy.parquet"
    copy.write_bytes(part.read_bytes())  # the very bytes committed, but behind a link
    part.unlink()
    part.symlink_to(copy)
    assert not store.is_done("scores", PART)
    assert len(store.warnings) == 1 and "symbolic link" in store.warnings[0]
    assert copy.is_file() and not os.path.lexists(part)  # the link went, not its target


@pytest.mark.parametrize("folder", ["scores", "_commits"])
def test_a_link_in_place_of_a_folder_in_the_run_is_replaced(store, outside, folder):
    (run_dir(store) / folder).symlink_to(outside.parent, target_is_directory=True)
    store.write_part("scores", PART, ROWS)
    assert untouched(outside)
    assert not (run_dir(store) / folder).is_symlink() and store.is_done("scores", PART)
    assert len(store.warnings) == 1 and f"{folder} was a link" in store.warnings[0]
    assert pd.read_parquet(phase_dir(store, "scores"))["map"].tolist() == [1, 2]


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


def test_files_are_written_whole_or_not_at_all_and_never_through_a_link(tmp_path, outside, monkeypatch):
    backend = LocalBackend(tmp_path / "out")
    backend.write("job/figure.png", b"old")
    folder = tmp_path / "out" / "job"

    def disk_full(fd, data):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr("cluster.files.os.write", disk_full)
        with pytest.raises(JobFailed, match="No space left on device"):
            backend.write("job/figure.png", b"new")
    assert (folder / "figure.png").read_bytes() == b"old" and os.listdir(folder) == ["figure.png"]  # no temporary left
    (folder / "figure.png").unlink()
    (folder / "figure.png").symlink_to(outside)
    backend.write("job/figure.png", b"newer")
    assert (folder / "figure.png").read_bytes() == b"newer" and not (folder / "figure.png").is_symlink()
    assert untouched(outside)
    backend.point_latest("job", "figure.png")
    backend.point_latest("job", "elsewhere")
    assert os.readlink(folder / "latest") == "elsewhere" and sorted(os.listdir(folder)) == ["figure.png", "latest"]
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "model.keras") as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".") and temporary.suffix == ".keras"
        temporary.write_bytes(b"half")
        raise RuntimeError
    assert not (tmp_path / "model.keras").exists() and sorted(os.listdir(tmp_path)) == ["elsewhere", "out"]


def test_a_temp_path_swapped_for_a_link_is_never_published(tmp_path, outside):
    target = tmp_path / "figure.png"
    with pytest.raises(OSError, match="replaced by a link"), atomic_path(target) as temporary:
        temporary.unlink()
        temporary.symlink_to(outside)
    assert not os.path.lexists(target) and untouched(outside)


def test_a_latest_that_leaves_its_job_folder_is_refused(tmp_path, outside):
    from cluster.storage import Damaged
    from cluster.store import open_run

    results = tmp_path / "out"
    (results / "job").mkdir(parents=True)
    (results / "job" / "latest").symlink_to("../../elsewhere")  # e.g. into another results folder
    with pytest.raises(Damaged, match="not to a run beside it"):
        open_run(results, "job")
    assert untouched(outside)


def test_special_files_where_parts_and_locks_belong_are_refused_at_once(store, tmp_path):
    store.write_part("scores", PART, ROWS)
    part = part_path(store, "scores", PART)
    part.unlink()
    os.mkfifo(part)  # a reader opening it would block forever
    assert not store.is_done("scores", PART)
    assert "FIFO" in store.warnings[-1] and not os.path.lexists(part)
    store.close()
    os.mkfifo(run_dir(store) / "_lock")
    with pytest.raises(BadInput, match="not a regular file"):
        RunStore(tmp_path / "out", "job", "abc123", {}).open(fresh=False)
