"""Run a job end to end: the one path every job command takes.

:func:`execute` binds the data (jobs that need it) or finds the model (CNN jobs, trained
first when the default one is missing), attaches to Ray, and runs :func:`run_phases`: the
result store, the phases in order, the outputs, the success mark. Model-free jobs may run
in this process instead (``ray_options`` None), with the same store and resume.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pyarrow as pa
from rich.console import Console

from cluster.model_file import file_hash
from cluster.options import RayOptions, RunOptions, is_uri
from cluster.progress import JobProgress
from cluster.store import RunStore, measured, run_id
from core.errors import BadInput, BadParameter, JobFailed
from core.data import Dataset
from jobs.base import Experiment, Job, Phase, Shard, TrainedModel, non_finite_columns

if TYPE_CHECKING:  # Ray is imported where a job runs on it, not by --help
    from cluster.scheduler import ActorPool


@dataclass
class RunOutcome:
    """What a finished run left: its folder (a path or a URI), the phases' tables and commit
    records, and where its outputs are."""

    job: str
    run_dir: str
    run_id: str
    metadata: dict  # params, model hash, data id
    tables: dict[str, pa.Table]
    records: dict[str, dict[str, dict]]  # phase -> shard id -> commit record (CPU seconds, node, work)
    outputs: list[str]
    shards_total: int = 0
    shards_reused: int = 0


def check_out_folder(out: Path | str, parameter: str = "out") -> None:
    """``out`` must be (or can become) a folder this process can write, or a URI whose
    bucket exists and answers: checked before any model is trained or Ray is started.
    ``parameter``: the option named in the error."""
    if is_uri(out):
        from cluster.object_store import ObjectBackend

        try:
            ObjectBackend(out).check(parameter)
        except BadParameter:
            raise
        except BadInput as error:
            raise BadParameter(parameter, str(error)) from None
        return
    out = Path(out)
    existing = next((p for p in (out, *out.parents) if p.exists()), Path("."))
    if not existing.is_dir():
        raise BadParameter(parameter, f"{existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BadParameter(parameter, f"{existing} is not writable")


@dataclass(frozen=True)
class ModelSource:
    """The CNN a job's actors load: a model file's bytes or a :class:`TrainedModel`; ``hash``
    goes into the run id, ``metadata`` holds its standardization and data id."""

    source: bytes | TrainedModel
    hash: str
    metadata: dict


def bind(job: Job, run: RunOptions, data_spec: str, console: Console, model: TrainedModel | None = None,
         dataset: Dataset | None = None) -> tuple[Job, ModelSource | None, dict | None]:
    """The job bound to its data (jobs that need data: ``dataset``, else loaded from
    ``data_spec``), the model its actors load (CNN jobs: ``model``, else ``run.model`` or the
    default model, trained first when missing) and the identity of the data it uses."""
    data_identity, source = None, None
    if job.needs_data:
        announce = dataset is None
        if dataset is None:
            from core.data import load_dataset

            dataset = load_dataset(data_spec)
        job = job.with_data(dataset)  # its checks against the data come before anything is said
        if announce:
            console.print(f"data {dataset.name}: {len(dataset.x_train):,} train / {len(dataset.x_test):,} test images")
        data_identity = dataset.identity()
    if job.needs_model and model is not None:
        source = ModelSource(model, model.hash, model.metadata)
    elif job.needs_model:
        from cluster.training import ensure_model

        model_path, metadata = ensure_model(run.model, data_spec, console, dataset=dataset)
        source = ModelSource(model_path.read_bytes(), file_hash(model_path), metadata)
    if source is not None:
        data_identity = source.metadata["data"]
    return job, source, data_identity


def check_before_work(run: RunOptions, ray_options: RayOptions | None) -> None:
    """What is checked before any data is loaded or model trained: ``--out`` and the Ray
    address (seconds, not minutes)."""
    check_out_folder(run.out)
    if ray_options is not None:
        from cluster.runtime import check_ray_address

        check_ray_address(ray_options.address)


@contextmanager
def ray_for_jobs(ray_options: RayOptions, console: Console) -> Iterator:
    """A Ray session for one job or a whole experiment, announced on ``console``."""
    from cluster.runtime import ray_session

    with ray_session(ray_options.address) as ray_info:
        where = "local Ray" if ray_info.started_here else f"Ray at {ray_info.address}"
        console.print(f"{where}: {ray_info.cpus:g} CPUs, {ray_info.gpus:g} GPUs"
                      + (f"; dashboard {ray_info.dashboard_url}" if ray_info.dashboard_url else ""))
        yield ray_info


def execute(job: Job, run: RunOptions, ray_options: RayOptions | None, data_spec: str, console: Console) -> tuple[Job, RunOutcome]:
    """Run ``job`` with its results under ``run.out``: on Ray (``ray_options``), or in this
    process when None (model-free jobs only). Returns the job (bound to its data when it
    needs data) and the outcome."""
    check_before_work(run, ray_options)
    job, source, data_identity = bind(job, run, data_spec, console)
    if ray_options is None:
        with JobProgress(console) as progress:
            return job, run_phases(job, run, progress, run_here(progress), source, data_identity)
    with ray_for_jobs(ray_options, console) as ray_info:
        return job, run_on_ray(job, run, ray_options, ray_info, console, source, data_identity)


def run_experiment(experiment: Experiment, run: RunOptions, ray_options: RayOptions, data_spec: str,
                   console: Console) -> list[tuple[Job, RunOutcome]]:
    """Every run of an experiment in order, in one Ray session; each is a normal run (its own
    run id, resumed like any other). Returns (job, outcome) of each run."""
    from core.data import load_dataset

    check_before_work(run, ray_options)
    dataset = load_dataset(data_spec) if experiment.needs_data else None
    if dataset is not None:
        experiment = experiment.with_data(dataset)  # its checks against the data come before anything runs
        console.print(f"data {dataset.name}: {len(dataset.x_train):,} train / {len(dataset.x_test):,} test images")
    done: list[tuple[Job, RunOutcome]] = []
    pools: dict[str, ActorPool] = {}  # model hash -> its actors, kept for the runs after
    with ray_for_jobs(ray_options, console) as ray_info:
        steps, outcome = experiment.steps(), None
        try:
            while True:
                try:
                    step = steps.send(outcome)
                except StopIteration:
                    return done
                job, source, data_identity = bind(step.job, run, data_spec, console, step.model, dataset)
                outcome = run_on_ray(job, run, ray_options, ray_info, console, source, data_identity, pools)
                done.append((job, outcome))
        finally:
            for pool in pools.values():
                pool.shutdown()


def run_phases(job: Job, run: RunOptions, progress: JobProgress,
               compute: Callable[[Phase, list[Shard], RunStore], None],
               source: ModelSource | None, data_identity: dict | None) -> RunOutcome:
    """The phase loop every job runs through: open the run's store (resuming finished
    shards unless ``run.fresh``), let ``compute`` do each phase's missing shards, read the
    phase back, write the outputs, mark success."""
    model_hash = source.hash if source is not None else None
    params = job.params()
    rid = run_id(job.name, params, model_hash, data_identity)
    metadata = {"params": params, "model_hash": model_hash, "data": data_identity}
    with RunStore(run.out, job.name, rid, metadata, progress.warn) as store:
        store.open(run.fresh)
        outcome = RunOutcome(job=job.name, run_dir=store.run_dir, run_id=rid, metadata=metadata, tables={}, records=store.records,
                             outputs=[])
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
        outcome.outputs = store.write_outputs(job.outputs(outcome.tables, store.location))
        store.write_manifest(all_shards, "done")
        store.mark_success()
    return outcome


def run_on_ray(job: Job, run: RunOptions, ray_options: RayOptions, ray_info, console: Console,
               source: ModelSource | None, data_identity: dict | None,
               pools: dict[str, ActorPool] | None = None) -> RunOutcome:
    """CNN phases on ``CNNWorker`` actors holding ``source`` (started at the first phase that
    needs them; as many as the cluster holds unless ``--actors``), the others as plain tasks.
    ``pools``: the actors of the run before (by model hash), reused when the model is the same,
    shut down before any other phase needs the CPUs, kept for the next run (the caller shuts
    them down at the end); None: the actors live as long as this run."""
    from cluster.runtime import check_resources
    from cluster.scheduler import ActorPool, TaskPool, run_shards

    n_actors = 0
    if job.needs_model:  # refused here, before any actor is asked for (Ray would wait forever)
        capacity = check_resources(ray_options.cpus_per_actor, ray_options.gpus_per_actor, ray_options.actors)
        n_actors = ray_options.actors or capacity.max_actors
    own: dict[str, ActorPool] = {}
    pools = own if pools is None else pools

    def compute(phase: Phase, pending: list[Shard], store: RunStore) -> None:
        wanted = source.hash if phase.needs_model else None
        for other in [key for key in pools if key != wanted]:  # their CPUs are this phase's now
            pools.pop(other).shutdown()
        if phase.needs_model:
            if source.hash not in pools:
                pools[source.hash] = ActorPool(source.source, n_actors, ray_options.cpus_per_actor,
                                               ray_options.gpus_per_actor, ray_options.chunk_size, ray_options.precision)
            pool = pools[source.hash]
        else:
            pool = TaskPool(phase, max(1, int(ray_info.cpus)))
        run_shards(pool, phase, pending, store, progress)

    try:
        with JobProgress(console) as progress:
            return run_phases(job, run, progress, compute, source, data_identity)
    finally:
        for pool in own.values():
            pool.shutdown()


def run_here(progress: JobProgress) -> Callable[[Phase, list[Shard], RunStore], None]:
    """Compute model-free shards in this process, one after the other; a phase whose
    ``compute`` takes ``on_item`` reports every finished item (e.g. an epoch) to the bar."""

    def compute(phase: Phase, pending: list[Shard], store: RunStore) -> None:
        context = phase.shared()
        for shard in pending:
            table = measured(lambda: phase.compute(context, shard.payload, on_item=progress.item_done))
            bad_columns = non_finite_columns(table, phase.must_be_finite)
            if bad_columns:
                raise JobFailed(f"shard {shard.shard_id} of {phase.name}: non-finite values (nan or inf) in "
                                f"{', '.join(bad_columns)}")
            store.write_part(phase.name, shard, table)
            progress.advance(0)

    return compute
