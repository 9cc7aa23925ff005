"""Run a job end to end: result store, Ray workers, phases in order, outputs, success mark."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

import pyarrow as pa

from cluster.model_file import file_hash
from cluster.progress import JobProgress
from cluster.runtime import RayInfo
from cluster.scheduler import ActorPool, TaskPool, run_shards
from cluster.store import RunStore
from core.errors import BadInput
from jobs.base import Phase, Shard, run_id


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


def run_phases(
    job: Job,
    out: Path,
    progress: JobProgress,
    execute: Callable[[Phase, list[Shard], RunStore], None],
    model_path: Path | None,
    data_identity: dict,
    fresh: bool = False,
) -> RunOutcome:
    """The phase loop every job runs through: open the run's store (resuming finished
    shards unless ``fresh``), let ``execute`` compute each phase's missing shards, read the
    phase back, write the outputs, mark success."""
    model_hash = file_hash(model_path) if model_path is not None else None
    params = job.params()
    rid = run_id(job.name, params, model_hash, data_identity)
    store = RunStore(out, job.name, rid, {"params": params, "model_hash": model_hash, "data": data_identity})
    store.open(fresh)
    outcome = RunOutcome(run_dir=store.run_dir, run_id=rid, tables={}, outputs=[])
    all_shards = {}
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
            execute(phase, pending, store)
        outcome.tables[phase.name] = store.read_phase(phase.name, shards, phase.schema)
        outcome.phases.append(phase.name)
    outcome.outputs = job.write_outputs(outcome.tables, store)
    store.write_manifest(all_shards, "done")
    store.mark_success()
    return outcome


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
    """Run ``job`` on Ray: CNN phases on ``CNNWorker`` actors, the others as plain tasks."""
    actor_pools = []

    def execute(phase: Phase, pending: list[Shard], store: RunStore) -> None:
        if phase.needs_model:
            if model_path is None:
                raise BadInput(f"{job.name}: phase {phase.name} needs a model")
            if not actor_pools:
                actor_pools.append(ActorPool(model_path, workers.n_actors(ray_info), workers.cpus_per_actor,
                                             workers.gpus_per_actor, workers.chunk_size))
            pool = actor_pools[0]
        else:
            pool = TaskPool(phase, max(1, int(ray_info.cpus)))
        run_shards(pool, phase, pending, store, progress,
                   on_retry=lambda shard, error: progress.log(
                       f"[yellow]worker lost ({type(error).__name__}); retrying shard {shard.shard_id}"))

    try:
        return run_phases(job, out, progress, execute, model_path, data_identity, fresh)
    finally:
        for pool in actor_pools:
            pool.shutdown()


def run_in_process(job: Job, out: Path, data_identity: dict, fresh: bool = False, **compute_options) -> RunOutcome:
    """Run a model-free ``job`` here, shard after shard, without Ray (same store, resume and
    success mark as :func:`run_job`); ``compute_options`` go to every ``phase.compute``
    (e.g. a per-epoch callback for a progress bar)."""

    def execute(phase: Phase, pending: list[Shard], store: RunStore) -> None:
        context = phase.shared()
        for shard in pending:
            store.write_part(phase.name, shard, phase.compute(context, shard.payload, **compute_options))

    return run_phases(job, out, JobProgress(enabled=False), execute, None, data_identity, fresh)
