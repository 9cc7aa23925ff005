"""Feed shards to Ray workers with a bounded ``ray.wait`` loop.

At most ``IN_FLIGHT_PER_WORKER`` shards per worker are in flight; results are handled in
completion order and written by the driver, one Parquet part per shard. Every finished
shard is classified once (:func:`classify`): done, its worker was lost (submitted again;
the actor restarts by itself), or the job's own code failed (the job fails).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import pyarrow as pa
import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, ObjectLostError, RayActorError, RayTaskError, WorkerCrashedError

from cluster.progress import JobProgress
from cluster.store import RunStore
from cluster.worker import compute_task, remote_worker_class
from core.errors import BadInput, JobFailed
from jobs.base import Phase, Shard, TrainedModel, non_finite_columns

IN_FLIGHT_PER_WORKER = 2
MAX_ATTEMPTS = 4  # per shard, on top of Ray's own task retries
WORKER_LOST = (ActorDiedError, ActorUnavailableError, RayActorError, WorkerCrashedError, ObjectLostError)


# ----- what became of a shard --------------------------------------------------------------
@dataclass(frozen=True)
class Done:
    table: pa.Table


@dataclass(frozen=True)
class WorkerLost:
    error: BaseException


@dataclass(frozen=True)
class JobError:
    error: BaseException


def classify(ref: ray.ObjectRef, must_be_finite: tuple[str, ...]) -> Done | WorkerLost | JobError:
    """Fetch a finished shard's result and say what it is: nan or inf in a column of
    ``must_be_finite`` (an ascent that overflowed) is a job error. Bad input found on a
    worker is raised as such (exit 2 at the CLI)."""
    try:
        table = ray.get(ref)
    except RayTaskError as error:
        if isinstance(error.cause, BadInput):
            raise error.cause from None
        return WorkerLost(error.cause) if isinstance(error.cause, WORKER_LOST) else JobError(error.cause or error)
    except WORKER_LOST as error:
        return WorkerLost(error)
    bad_columns = non_finite_columns(table, must_be_finite)
    if bad_columns:
        return JobError(FloatingPointError(f"non-finite values (nan or inf) in {', '.join(bad_columns)}"))
    return Done(table)


# ----- worker pools --------------------------------------------------------------------------
class ActorPool:
    """``n_actors`` CNNWorker actors, each with its own copy of the model (a model file's bytes,
    or a trained model's weights); a shard goes to
    the actor with the fewest shards in flight, among those not lost.

    An actor that loses its process (or its node) is restarted by Ray, but only where a
    node has room: its shards come back at once as WorkerLost (no task retries on the
    actor, which would wait for that restart, forever when the cluster is full) and go to
    the other actors; the lost actor gets shards again once it answers a call (``watching``).
    """

    def __init__(self, model: bytes | TrainedModel, n_actors: int, cpus_per_actor: float, gpus_per_actor: float,
                 chunk_size: int, precision: str = "float32"):
        self._model = [ray.put(model)]  # nested: actors fetch it themselves
        worker_class = remote_worker_class(max_task_retries=0)
        self.actors = [
            worker_class.options(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor).remote(
                max(1, round(cpus_per_actor)), gpus_per_actor > 0, chunk_size, precision
            )
            for _ in range(n_actors)
        ]
        self._load = [0] * n_actors
        self._actor_of: dict[ray.ObjectRef, int] = {}
        self._lost: dict[int, ray.ObjectRef] = {}  # lost actor -> its pid() call, answered once it is back

    @property
    def _usable(self) -> list[int]:
        return [actor for actor in range(len(self.actors)) if actor not in self._lost]

    @property
    def has_room(self) -> bool:
        return len(self._actor_of) < IN_FLIGHT_PER_WORKER * len(self._usable)

    @property
    def watching(self) -> list[ray.ObjectRef]:
        """Calls to lost actors: one finishing means its actor may be usable again (:meth:`heard`)."""
        return list(self._lost.values())

    def _probe(self, actor: int) -> None:
        # retried by Ray until the actor is alive again (or dead for good)
        self._lost[actor] = self.actors[actor].pid.options(max_task_retries=-1).remote()

    def heard(self, ref: ray.ObjectRef) -> None:
        """``ref`` (from :attr:`watching`) finished: its actor is back, or is asked again."""
        actor = next(actor for actor, probe in self._lost.items() if probe == ref)
        try:
            ray.get(ref)
            del self._lost[actor]
        except (RayTaskError, *WORKER_LOST):
            self._probe(actor)

    def submit(self, phase: Phase, shard: Shard) -> ray.ObjectRef:
        actor = min(self._usable, key=self._load.__getitem__)
        method = self.actors[actor].compute.options(name=f"{phase.name}:{shard.shard_id}")
        ref = method.remote(phase.compute, shard.payload, self._model)
        self._load[actor] += 1
        self._actor_of[ref] = actor
        return ref

    def release(self, ref: ray.ObjectRef, lost: bool = False) -> None:
        """``ref`` is finished; ``lost``: its actor was lost (no shards for it until it answers)."""
        actor = self._actor_of.pop(ref)
        self._load[actor] -= 1
        if lost and actor not in self._lost:
            self._probe(actor)

    def shutdown(self) -> None:
        for actor in self.actors:
            ray.kill(actor)


class TaskPool:
    """Plain Ray tasks for model-free phases, at most ``IN_FLIGHT_PER_WORKER`` per CPU; the
    phase's shared data is put in the object store once."""

    def __init__(self, phase: Phase, n_workers: int):
        self._shared = ray.put(phase.shared())
        self._capacity = IN_FLIGHT_PER_WORKER * n_workers
        self._in_flight: set[ray.ObjectRef] = set()

    @property
    def has_room(self) -> bool:
        return len(self._in_flight) < self._capacity

    def submit(self, phase: Phase, shard: Shard) -> ray.ObjectRef:
        ref = compute_task.options(name=f"{phase.name}:{shard.shard_id}").remote(phase.compute, self._shared, shard.payload)
        self._in_flight.add(ref)
        return ref

    watching: list[ray.ObjectRef] = []  # tasks are placed anew by Ray: nothing to watch

    def release(self, ref: ray.ObjectRef, lost: bool = False) -> None:
        self._in_flight.discard(ref)

    def heard(self, ref: ray.ObjectRef) -> None:
        raise AssertionError("a TaskPool watches nothing")


def run_shards(pool: ActorPool | TaskPool, phase: Phase, shards: list[Shard], store: RunStore,
               progress: JobProgress) -> None:
    """Compute ``shards`` on ``pool``, writing each result as soon as it arrives."""
    queue: deque[tuple[Shard, int]] = deque((shard, 1) for shard in shards)
    in_flight: dict[ray.ObjectRef, tuple[Shard, int]] = {}
    try:
        while queue or in_flight:
            while queue and pool.has_room:
                shard, attempt = queue.popleft()
                in_flight[pool.submit(phase, shard)] = (shard, attempt)
            [ref], _ = ray.wait([*in_flight, *pool.watching], num_returns=1)
            if ref not in in_flight:
                pool.heard(ref)  # a lost worker answered again
                continue
            shard, attempt = in_flight.pop(ref)
            outcome = classify(ref, phase.must_be_finite)
            pool.release(ref, lost=isinstance(outcome, WorkerLost))
            match outcome:
                case Done(table):
                    store.write_part(phase.name, shard, table)
                    progress.advance(shard.n_items)
                case WorkerLost(error) if attempt < MAX_ATTEMPTS:
                    progress.log(f"[yellow]worker lost ({type(error).__name__}); retrying shard {shard.shard_id}")
                    queue.appendleft((shard, attempt + 1))
                case WorkerLost(error):
                    raise JobFailed(f"shard {shard.shard_id} of {phase.name} lost its worker {attempt} times") from error
                case JobError(error):
                    raise JobFailed(f"shard {shard.shard_id} of {phase.name} failed: {error!r}") from error
    finally:
        for ref in in_flight:  # interrupted or failed: drop what is still running
            try:
                ray.cancel(ref)
            except (TypeError, ValueError, RuntimeError):
                pass  # already finished, or not cancellable: its result is ignored
