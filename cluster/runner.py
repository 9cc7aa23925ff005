"""Run a job end to end: result store, Ray workers, phases in order, outputs, success mark."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import pyarrow as pa

from cluster.model_file import file_hash
from cluster.progress import JobProgress
from cluster.runtime import RayInfo
from cluster.scheduler import ActorPool, TaskPool, run_shards
from cluster.store import RunStore
from core.errors import BadInput
from jobs.base import Phase, run_id


class Job(Protocol):
    """What ``run_job`` needs from a job module's spec (see jobs/)."""

    name: str

    def params(self) -> dict: ...

    def phases(self) -> list[Phase]: ...

    def write_outputs(self, tables: dict[str, pa.Table], store: RunStore) -> list[Path]: ...


@dataclass(frozen=True)
class WorkerOptions:
    """How many workers and what each gets. ``actors`` None = CPUs ÷ cpus_per_actor."""

    actors: int | None = None
    cpus_per_actor: float = 1.0
    gpus_per_actor: float = 0.0
    chunk_size: int = 256

    def n_actors(self, ray_info: RayInfo) -> int:
        if self.actors is not None:
            return self.actors
        if self.gpus_per_actor > 0:
            return max(1, int(ray_info.gpus // self.gpus_per_actor))
        return max(1, int(math.floor(ray_info.cpus / self.cpus_per_actor)))


@dataclass
class RunOutcome:
    run_dir: Path
    run_id: str
    tables: dict[str, pa.Table]
    outputs: list[Path]
    shards_total: int = 0
    shards_reused: int = 0
    phases: list[str] = field(default_factory=list)


def run_job(
    job: Job,
    out: Path,
    ray_info: RayInfo,
    workers: WorkerOptions,
    progress: JobProgress,
    model_path: Path | None,
    data_identity: dict,
    fresh: bool = False,
) -> RunOutcome:
    """Compute every phase of ``job`` (resuming finished shards unless ``fresh``)."""
    model_hash = file_hash(model_path) if model_path is not None else None
    params = job.params()
    rid = run_id(job.name, params, model_hash, data_identity)
    store = RunStore(out, job.name, rid, {"params": params, "model_hash": model_hash, "data": data_identity})
    store.open(fresh)
    outcome = RunOutcome(run_dir=store.run_dir, run_id=rid, tables={}, outputs=[])
    all_shards = {}
    actor_pool = None
    try:
        for phase in job.phases():
            shards = phase.shards(outcome.tables)
            all_shards[phase.name] = shards
            store.write_manifest(all_shards, "running")
            pending = [shard for shard in shards if not store.is_done(phase.name, shard)]
            done_items = sum(shard.n_items for shard in shards) - sum(shard.n_items for shard in pending)
            outcome.shards_total += len(shards)
            outcome.shards_reused += len(shards) - len(pending)
            progress.start_phase(
                f"{job.name}: {phase.name}", phase.unit, sum(s.n_items for s in shards),
                len(shards), done_items, len(shards) - len(pending),
            )
            if pending:
                if phase.needs_model:
                    if model_path is None:
                        raise BadInput(f"{job.name}: phase {phase.name} needs a model")
                    if actor_pool is None:
                        actor_pool = ActorPool(
                            model_path, workers.n_actors(ray_info), workers.cpus_per_actor,
                            workers.gpus_per_actor, workers.chunk_size,
                        )
                    pool = actor_pool
                else:
                    pool = TaskPool(phase, max(1, int(ray_info.cpus)))
                run_shards(pool, phase, pending, store, progress,
                           on_retry=lambda shard, error: progress.log(
                               f"[yellow]worker lost ({type(error).__name__}); retrying shard {shard.shard_id}"))
            outcome.tables[phase.name] = store.read_phase(phase.name, shards, phase.schema)
            outcome.phases.append(phase.name)
        outcome.outputs = job.write_outputs(outcome.tables, store)
        store.write_manifest(all_shards, "done")
        store.mark_success()
    finally:
        if actor_pool is not None:
            actor_pool.shutdown()
    return outcome
