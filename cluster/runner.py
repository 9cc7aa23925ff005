"""Run a job end to end: the one path every job command takes.

:func:`execute` binds the data (jobs that need it) or finds the model (CNN jobs, trained
first when the default one is missing), attaches to Ray, and runs :func:`run_phases`: the
result store, the phases in order, the outputs, the success mark. Model-free jobs may run
in this process instead (``ray_options`` None), with the same store and resume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pyarrow as pa
from rich.console import Console

from cluster.model_file import file_hash
from cluster.options import RayOptions, RunOptions, is_uri
from cluster.progress import JobProgress
from cluster.store import RunStore
from core.errors import BadParameter, JobFailed
from jobs.base import Job, Phase, Shard, non_finite_columns, run_id


@dataclass
class RunOutcome:
    run_dir: Path | str  # a URI (cluster.object_store.ObjectURL) when --out is one
    run_id: str
    tables: dict[str, pa.Table]
    outputs: list[Path]  # ObjectURLs on an object store
    shards_total: int = 0
    shards_reused: int = 0
    phases: list[str] = field(default_factory=list)


def check_out_folder(out: Path | str, parameter: str = "out") -> None:
    """``out`` must be (or can become) a folder this process can write, or a URI whose
    bucket exists and answers: checked before any model is trained or Ray is started.
    ``parameter``: the option named in the error."""
    if is_uri(out):
        from cluster.object_store import check_location

        check_location(out, parameter)
        return
    out = Path(out)
    existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise BadParameter(parameter, f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadParameter(parameter, f"{existing} is not writable")


def execute(job: Job, run: RunOptions, ray_options: RayOptions | None, data_spec: str, console: Console) -> tuple[Job, RunOutcome]:
    """Run ``job`` with its results under ``run.out``: on Ray (``ray_options``), or in this
    process when None (model-free jobs only). Returns the job (bound to its data when it
    needs data) and the outcome."""
    check_out_folder(run.out)
    if ray_options is not None:
        from cluster.runtime import check_ray_address

        check_ray_address(ray_options.address)  # seconds, not minutes: before the data and the model
    model_path, data_identity, dataset = None, None, None
    if job.needs_data:
        from core.data import load_dataset

        dataset = load_dataset(data_spec)
        job = job.with_data(dataset)
        data_identity = dataset.identity()
        console.print(f"data {dataset.name}: {len(dataset.x_train):,} train / {len(dataset.x_test):,} test images")
    if job.needs_model:
        from cluster.training import ensure_model

        model_path, metadata = ensure_model(run.model, data_spec, console, dataset=dataset)
        data_identity = metadata["data"]
    if ray_options is None:
        with JobProgress(console) as progress:
            return job, run_phases(job, run, progress, run_here(progress), model_path, data_identity)
    from cluster.runtime import check_resources, ray_session

    with ray_session(ray_options.address) as ray_info:
        where = "local Ray" if ray_info.started_here else f"Ray at {ray_info.address}"
        console.print(f"{where}: {ray_info.cpus:g} CPUs, {ray_info.gpus:g} GPUs"
                      + (f"; dashboard {ray_info.dashboard_url}" if ray_info.dashboard_url else ""))
        n_actors = 0
        if job.needs_model:  # refused here, before any actor is asked for (Ray would wait forever)
            capacity = check_resources(ray_options.cpus_per_actor, ray_options.gpus_per_actor, ray_options.actors)
            n_actors = ray_options.actors or capacity.max_actors
        with JobProgress(console) as progress:
            return job, run_on_ray(job, run, ray_options, n_actors, ray_info, progress, model_path, data_identity)


def run_phases(job: Job, run: RunOptions, progress: JobProgress,
               compute: Callable[[Phase, list[Shard], RunStore], None],
               model_path: Path | None, data_identity: dict) -> RunOutcome:
    """The phase loop every job runs through: open the run's store (resuming finished
    shards unless ``run.fresh``), let ``compute`` do each phase's missing shards, read the
    phase back, write the outputs, mark success."""
    model_hash = file_hash(model_path) if model_path is not None else None
    params = job.params()
    rid = run_id(job.name, params, model_hash, data_identity)
    metadata = {"params": params, "model_hash": model_hash, "data": data_identity}
    with open_store(run.out, job.name, rid, metadata, progress.warn) as store:
        store.open(run.fresh)
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
                compute(phase, pending, store)
            outcome.tables[phase.name] = store.read_phase(phase.name, shards, phase.schema)
            outcome.phases.append(phase.name)
        outcome.outputs = job.write_outputs(outcome.tables, store)
        store.write_manifest(all_shards, "done")
        outcome.outputs = store.publish(outcome.outputs)  # uploads them when the store is remote
        store.mark_success()
    return outcome


def open_store(out: Path | str, job: str, rid: str, metadata: dict, warn: Callable[[str], None]) -> RunStore:
    """The run's store: files under a local folder, or objects under a filesystem URI."""
    if is_uri(out):
        from cluster.object_store import ObjectRunStore

        return ObjectRunStore(out, job, rid, metadata, warn=warn)
    return RunStore(out, job, rid, metadata, warn=warn)


def run_on_ray(job: Job, run: RunOptions, ray_options: RayOptions, n_actors: int, ray_info, progress: JobProgress,
               model_path: Path | None, data_identity: dict) -> RunOutcome:
    """CNN phases on ``n_actors`` ``CNNWorker`` actors (started once, at the first phase that
    needs them), the others as plain tasks."""
    from cluster.scheduler import ActorPool, TaskPool, run_shards

    actor_pools: list[ActorPool] = []

    def compute(phase: Phase, pending: list[Shard], store: RunStore) -> None:
        if phase.needs_model:
            if not actor_pools:
                actor_pools.append(ActorPool(model_path, n_actors, ray_options.cpus_per_actor,
                                             ray_options.gpus_per_actor, ray_options.chunk_size, ray_options.precision))
            pool = actor_pools[0]
        else:
            pool = TaskPool(phase, max(1, int(ray_info.cpus)))
        run_shards(pool, phase, pending, store, progress)

    try:
        return run_phases(job, run, progress, compute, model_path, data_identity)
    finally:
        for pool in actor_pools:
            pool.shutdown()


def run_here(progress: JobProgress) -> Callable[[Phase, list[Shard], RunStore], None]:
    """Compute model-free shards in this process, one after the other; a phase whose
    ``compute`` takes ``on_item`` reports every finished item (e.g. an epoch) to the bar."""

    def compute(phase: Phase, pending: list[Shard], store: RunStore) -> None:
        context = phase.shared()
        for shard in pending:
            table = phase.compute(context, shard.payload, on_item=progress.item_done)
            bad_columns = non_finite_columns(table, phase.must_be_finite)
            if bad_columns:
                raise JobFailed(f"shard {shard.shard_id} of {phase.name}: non-finite values (nan or inf) in "
                                f"{', '.join(bad_columns)}")
            store.write_part(phase.name, shard, table)
            progress.advance(0)

    return compute
