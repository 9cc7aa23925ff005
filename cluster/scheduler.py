"""Feed shards to Ray workers with a bounded ``ray.wait`` loop.

At most ``IN_FLIGHT_PER_WORKER`` shards per worker are in flight; results are handled in
completion order and written by the driver, one Parquet part per shard. A shard whose
worker died is submitted again (its actor restarts by itself); an exception raised by the
job's own code fails the job.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path
from typing import Any, Callable

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, ObjectLostError, RayActorError, RayTaskError, WorkerCrashedError

from cluster.progress import JobProgress
from cluster.store import RunStore
from cluster.worker import compute_task, remote_worker_class
from core.errors import BadInput
from jobs.base import Phase, Shard

IN_FLIGHT_PER_WORKER = 2
MAX_ATTEMPTS = 4  # per shard, on top of Ray's own task retries
WORKER_LOST = (ActorDiedError, ActorUnavailableError, RayActorError, WorkerCrashedError, ObjectLostError)


class JobFailed(RuntimeError):
    """A shard raised an error in the job's code, or kept losing its worker."""


class ActorPool:
    """``n_actors`` CNNWorker actors, each with its own copy of the model."""

    def __init__(self, model_path: Path, n_actors: int, cpus_per_actor: float, gpus_per_actor: float, chunk_size: int):
        self._model = [ray.put(Path(model_path).read_bytes())]  # nested: actors fetch it themselves
        worker_class = remote_worker_class()
        self.actors = [
            worker_class.options(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor).remote(
                max(1, round(cpus_per_actor)), gpus_per_actor > 0, chunk_size
            )
            for _ in range(n_actors)
        ]
        self._load = [0] * n_actors

    @property
    def capacity(self) -> int:
        return IN_FLIGHT_PER_WORKER * len(self.actors)

    def submit(self, phase: Phase, shard: Shard) -> tuple[ray.ObjectRef, int]:
        slot = min(range(len(self.actors)), key=self._load.__getitem__)
        self._load[slot] += 1
        method = self.actors[slot].compute.options(name=f"{phase.name}:{shard.shard_id}")
        return method.remote(phase.compute, shard.payload, self._model), slot

    def release(self, slot: int) -> None:
        self._load[slot] -= 1

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


class TaskPool:
    """Plain Ray tasks for model-free phases; the phase's shared data is put once."""

    def __init__(self, phase: Phase, n_workers: int):
        self._shared = ray.put(phase.shared())
        self._n_workers = n_workers

    @property
    def capacity(self) -> int:
        return IN_FLIGHT_PER_WORKER * self._n_workers

    def submit(self, phase: Phase, shard: Shard) -> tuple[ray.ObjectRef, int]:
        task = compute_task.options(name=f"{phase.name}:{shard.shard_id}")
        return task.remote(phase.compute, self._shared, shard.payload), 0

    def release(self, slot: int) -> None:
        pass

    def shutdown(self) -> None:
        pass


def run_shards(pool, phase: Phase, shards: list[Shard], store: RunStore, progress: JobProgress,
               on_retry: Callable[[Shard, Exception], None] | None = None) -> None:
    """Compute ``shards`` on ``pool``, writing each result as soon as it arrives."""
    queue: deque[tuple[Shard, int]] = deque((shard, 1) for shard in shards)
    in_flight: dict[Any, tuple[Shard, int, int]] = {}
    try:
        while queue or in_flight:
            while queue and len(in_flight) < pool.capacity:
                shard, attempt = queue.popleft()
                ref, slot = pool.submit(phase, shard)
                in_flight[ref] = (shard, slot, attempt)
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            for ref in ready:
                shard, slot, attempt = in_flight.pop(ref)
                pool.release(slot)
                try:
                    table = ray.get(ref)
                except RayTaskError as error:
                    if isinstance(error.cause, BadInput):
                        raise error.cause from None
                    if isinstance(error.cause, WORKER_LOST):
                        table = None
                        lost = error.cause
                    else:
                        raise JobFailed(f"shard {shard.shard_id} of {phase.name} failed: {error.cause!r}") from error
                except WORKER_LOST as error:
                    table = None
                    lost = error
                if table is None:
                    if attempt >= MAX_ATTEMPTS:
                        raise JobFailed(f"shard {shard.shard_id} of {phase.name} lost its worker {attempt} times") from lost
                    if on_retry is not None:
                        on_retry(shard, lost)
                    queue.appendleft((shard, attempt + 1))
                    continue
                store.write_part(phase.name, shard, table)
                progress.advance(shard.n_items)
    finally:
        for ref in in_flight:  # interrupted or failed: drop what is still running
            try:
                ray.cancel(ref)
            except (TypeError, ValueError, RuntimeError):
                pass  # already finished, or not cancellable: its result is ignored
