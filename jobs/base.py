"""What every job is made of: phases that cut work into shards, and the worker-side session.

A job is a frozen dataclass of parameters (declared with :func:`core.params.param`, checked
when it is built) and a list of :class:`Phase` objects run in order. A phase yields
:class:`Shard` descriptions (small, picklable) from the tables of the phases before it;
``compute`` runs on a worker and returns the shard's rows as a ``pyarrow.Table`` of the
phase's schema. At the end the job turns the tables into :class:`Artifact` outputs (figures,
summaries), which the run store writes: jobs never touch paths. Nothing here knows about Ray
or printing, and importing a job module loads no TensorFlow (``dreamctl --help`` stays fast).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, Callable, Generator, Hashable, Protocol, Sequence

import pyarrow as pa

from core.defaults import LEARNING_RATE
from core.errors import BadParameter
from core.model import CONV_LAYERS, Standardization
from core.params import param, parse_selection

if TYPE_CHECKING:
    import keras
    import numpy as np

    from core.ascent import Ascent
    from core.data import Dataset

IMAGE_TYPE = pa.list_(pa.float32(), 28 * 28)  # a 28×28 image, row-major


@dataclass(frozen=True)
class Shard:
    """One unit of work. ``shard_id`` names its result file; ``n_rows`` is how many rows it
    writes (checked on resume); ``n_items`` counts work items for the progress rate."""

    shard_id: str
    payload: Any
    n_rows: int
    n_items: int


@dataclass(frozen=True)
class Artifact:
    """An output of a job besides its phases' parts: ``data`` is a file's bytes (a PNG, a
    page) or a table (written as Parquet with the run's metadata); ``name`` is its file name
    in the run folder."""

    name: str
    data: bytes | pa.Table


@dataclass(frozen=True)
class TrainedModel:
    """A CNN trained by an experiment's training run (jobs/train.py), as any worker can rebuild
    it: its weights (float32, ``core.model.build_cnn`` order), dense width, standardization
    ({mean, std}) and the identity of its data set. ``hash`` names it in the run ids of the
    runs that use it, as a model file's hash does."""

    weights: bytes = field(repr=False)
    dense_units: int
    standardization: dict
    data: dict

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.weights).hexdigest()[:16]

    @property
    def metadata(self) -> dict:
        """As a model file's metadata (cluster/model_file.py): standardization and data id."""
        return {"standardization": self.standardization, "data": self.data}

    def build(self) -> keras.Model:
        import numpy as np

        from core.model import build_cnn

        model = build_cnn(self.dense_units)
        flat = np.frombuffer(self.weights, np.float32)
        shapes = [tuple(w.shape) for w in model.weights]
        sizes = [int(np.prod(shape)) for shape in shapes]
        if sum(sizes) != flat.size:
            raise ValueError(f"{flat.size} weights stored, build_cnn({self.dense_units}) has {sum(sizes)}")
        model.set_weights([chunk.reshape(shape) for chunk, shape in zip(np.split(flat, np.cumsum(sizes)[:-1]), shapes)])
        return model


@dataclass(frozen=True)
class Step:
    """One run of an experiment: a job, and for a CNN job the trained model it runs on
    (None: the ``--model`` file, or the default model)."""

    job: Any
    model: TrainedModel | None = None


class Experiment(Protocol):
    """A sequence of runs, each a normal run with its own run id (resumed like any other).
    ``steps`` is a generator: it yields a :class:`Step`, receives the finished run's outcome
    (``run_id``, ``run_dir``, ``tables``: phase -> table, ``records``: phase -> shard id ->
    commit record) and yields the next step, which may depend on what came back."""

    name: str
    needs_data: bool

    def with_data(self, dataset: Dataset) -> Experiment: ...

    def steps(self) -> Generator[Step, Any, None]: ...


class ModelSession:
    """What a CNN worker holds: the loaded model, its metadata, compiled ascents and the last
    inputs it made (:meth:`made_once`)."""

    def __init__(self, model: keras.Model, metadata: dict, chunk_size: int):
        self.model = model
        self.metadata = metadata
        self.standardization = Standardization(**metadata["standardization"])
        self.chunk_size = chunk_size
        self._ascents: dict[tuple[str, ...], Ascent] = {}
        self._last_made: tuple[Hashable, np.ndarray] | None = None

    def made_once(self, key: Hashable, make: Callable[[], np.ndarray]) -> np.ndarray:
        """``make()``, made again only when ``key`` differs from the last call's: e.g. the
        start images that every map of a precursor run computes on (≈ 0.26 CPU s for 19,683
        patterns). One array is kept; it is read-only."""
        if self._last_made is None or self._last_made[0] != key:
            self._last_made = None  # the old array's memory first
            made = make()
            made.flags.writeable = False
            self._last_made = (key, made)
        return self._last_made[1]

    def ascent(self, layers: Sequence[str]) -> Ascent:
        """The compiled ascent for these layers (built once per worker)."""
        from core.ascent import Ascent

        key = tuple(layers)
        if key not in self._ascents:
            self._ascents[key] = Ascent(self.model, key, self.chunk_size)
        return self._ascents[key]


class Phase(Protocol):
    """One step of a job. ``name`` is its folder under the run dir; ``unit`` names the
    work items in the progress display; ``needs_model`` picks CNN actors (True) or plain
    tasks that receive ``shared()`` (put in the object store once) as their context.
    ``must_be_finite``: the columns (floats, or lists of floats) that hold no nan or inf in
    a good result: a shard that returns one fails the job instead of being stored."""

    name: str
    unit: str
    schema: pa.Schema
    needs_model: bool
    must_be_finite: tuple[str, ...]  # columns whose numbers must all be finite (nan there = a failed shard)

    def shards(self, tables: dict[str, pa.Table]) -> list[Shard]: ...

    def compute(self, context: Any, payload: Any) -> pa.Table: ...

    def shared(self) -> Any: ...


@dataclass(frozen=True)
class SummaryPhase:
    """The one comparison phase of the experiments: a single shard, computed where the runner
    is when the phase is planned, from the tables before it (``inputs(tables)``, small) by
    ``summarize(inputs) -> table of schema``."""

    name: str
    schema: pa.Schema
    inputs: Callable[[dict[str, pa.Table]], Any]
    summarize: Callable[[Any], pa.Table]
    unit = "rows"
    needs_model = False
    must_be_finite: tuple[str, ...] = ()

    def shared(self) -> None:
        return None

    def shards(self, tables: dict[str, pa.Table]) -> list[Shard]:
        table = self.summarize(self.inputs(tables))
        return [Shard("all", table, table.num_rows, table.num_rows)]

    def compute(self, context: None, table: pa.Table, on_item: Callable[[str], Any] | None = None) -> pa.Table:
        return table


@dataclass(frozen=True)
class Summary:
    """The last run of an experiment: its comparison of the runs before it. ``parameters``:
    the experiment's, and the ids of the runs it compares (so its run id follows them);
    ``figures(tables)``: its outputs."""

    name: str
    parameters: dict
    summary_phases: tuple[SummaryPhase, ...]
    figures: Callable[[dict[str, pa.Table]], list[Artifact]]
    needs_model = False
    needs_data = False

    def params(self) -> dict:
        return self.parameters

    def phases(self) -> list:
        return list(self.summary_phases)

    def outputs(self, tables: dict[str, pa.Table], locate) -> list[Artifact]:
        return self.figures(tables)


class CNNPhase:
    """Base of the phases that run on CNN actors: the actor holds the model, so there is no
    shared data to put in the object store."""

    needs_model = True

    def shared(self) -> None:
        return None


class Job(Protocol):
    """A job spec. ``needs_model``: its phases run on CNN actors (the model's data set is
    the job's). ``needs_data``: the runner loads the ``--data`` set and calls
    ``with_data(dataset)``, which returns the spec bound to it (checks that need the data
    happen there). ``outputs``: the figures and summaries made from the phases' tables;
    ``locate(name)`` says where the output ``name`` will be (a path or a URI), for outputs
    that refer to others."""

    name: str
    needs_model: bool
    needs_data: bool

    def params(self) -> dict: ...

    def phases(self) -> list[Phase]: ...

    def outputs(self, tables: dict[str, pa.Table], locate: Callable[[str], str]) -> list[Artifact]: ...


WORK_KEY = b"dreamctl.shard"  # what a shard says of its work; the store moves it to the shard's commit record


def with_work(table: pa.Table, **work: int | float) -> pa.Table:
    """``table`` with numbers about the work behind it (e.g. ``image_steps``) that the run
    store keeps in the shard's commit record (readers get them with the run's records)."""
    import json

    return table.replace_schema_metadata({**(table.schema.metadata or {}), WORK_KEY: json.dumps(work).encode()})


def measured(compute: Callable[[], pa.Table], node: str | None = None) -> pa.Table:
    """The table ``compute()`` returns, with what the run store keeps in the shard's commit
    record (WORK_KEY in its schema metadata): the Ray node, the CPU and wall seconds of the
    process, and what the phase said of its work (:func:`with_work`)."""
    import json
    import time

    cpu, wall = time.process_time(), time.perf_counter()
    table = compute()
    metadata = dict(table.schema.metadata or {})
    stats = {**json.loads(metadata.get(WORK_KEY, b"{}")), **({"node": node} if node else {}),
             "cpu_seconds": round(time.process_time() - cpu, 3), "seconds": round(time.perf_counter() - wall, 3)}
    return table.replace_schema_metadata({**metadata, WORK_KEY: json.dumps(stats).encode()})


def non_finite_columns(table: pa.Table, columns: Sequence[str]) -> list[str]:
    """Those of ``columns`` (floats or lists of floats) that hold nan or inf."""
    import pyarrow.compute as pc

    bad = []
    for name in columns:
        values = table.column(name).combine_chunks()
        while pa.types.is_list(values.type) or pa.types.is_fixed_size_list(values.type):
            values = values.flatten()
        if len(values) and not pc.all(pc.is_finite(values)).as_py():
            bad.append(name)
    return bad


def spec_params(spec: Any, exclude: Sequence[str] = ()) -> dict:
    """A spec's parameters as plain values (nested specs as dicts), for the run id."""
    return {f.name: _plain(getattr(spec, f.name)) for f in fields(spec) if f.name not in exclude}


def _plain(value: Any) -> Any:
    return asdict(value) if is_dataclass(value) and not isinstance(value, type) else value


# ----- parameters several jobs share --------------------------------------------------------
def layer_param() -> Any:
    return param("conv3", "Conv layer: conv1 (32 maps), conv2 (64), conv3 (128).", choices=tuple(CONV_LAYERS))


def maps_param(default: str | None = "all", help: str = "Maps: all, a range 0-15, a list 3,7,56, or a mix.") -> Any:
    return param(default, help, parse=lambda text, spec: parse_selection(text, CONV_LAYERS[spec.layer], "map", spec.layer))


def learning_rate_param(default: float = LEARNING_RATE, help: str = "Step size η on standardized pixels.") -> Any:
    return param(default, help, above=0.0)


def check_maps(maps: Sequence[int], layer: str, name: str = "maps") -> tuple[int, ...]:
    """Map ids given as numbers must exist in the layer and be unique and sorted."""
    n_maps = CONV_LAYERS[layer]
    bad = [m for m in maps if not 0 <= m < n_maps]
    if bad:
        raise BadParameter(name, f"map {bad[0]} is out of range: {layer} has maps 0-{n_maps - 1}")
    if not maps:
        raise BadParameter(name, "no map selected")
    return tuple(sorted(set(maps)))


class DataBound:
    """Mixin of jobs that need the data set: ``dataset`` stays out of pickles (tasks get the
    data through the object store) and out of the parameters (the run id records its identity)."""

    dataset: Dataset | None
    needs_model = False
    needs_data = True

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["dataset"] = None
        return state

    def params(self) -> dict:
        return spec_params(self, exclude=("dataset",))
