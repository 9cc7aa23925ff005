"""Where the store keeps a run's files, as local paths (for tests that tamper with them)."""

from __future__ import annotations

from pathlib import Path

from cluster.store import RunStore, part_key, record_key


def run_dir(store: RunStore) -> Path:
    return Path(store.backend.location(store.run))


def phase_dir(store: RunStore, phase: str) -> Path:
    return run_dir(store) / phase


def part_path(store: RunStore, phase: str, shard) -> Path:
    return Path(store.backend.location(part_key(store.run, phase, shard.shard_id)))


def commit_path(store: RunStore, phase: str, shard) -> Path:
    return Path(store.backend.location(record_key(store.run, phase, shard.shard_id)))
