"""What every job is made of: phases that cut work into shards, and the worker-side session.

A job is a frozen dataclass of parameters (declared with :func:`core.params.param`, checked
when it is built) and a list of :class:`Phase` objects run in order. A phase yields
:class:`Shard` descriptions (small, picklable) from the tables of the phases before it;
``compute`` runs on a worker and returns the shard's rows as a ``pyarrow.Table`` of the
phase's schema. Nothing here knows about Ray or printing, and importing a job module loads
no TensorFlow (``dreamctl --help`` stays fast).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields, is_dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, Sequence

import pyarrow as pa

from core.defaults import LEARNING_RATE
from core.errors import BadParameter
from core.model import CONV_LAYERS, Standardization
from core.params import param, parse_selection

if TYPE_CHECKING:
    import keras

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


class ModelSession:
    """What a CNN worker holds: the loaded model, its metadata and compiled ascents."""

    def __init__(self, model: keras.Model, metadata: dict, chunk_size: int):
        self.model = model
        self.metadata = metadata
        self.standardization = Standardization(**metadata["standardization"])
        self.chunk_size = chunk_size
        self._ascents: dict[tuple[str, ...], Ascent] = {}

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
    happen there)."""

    name: str
    needs_model: bool
    needs_data: bool

    def params(self) -> dict: ...

    def phases(self) -> list[Phase]: ...

    def write_outputs(self, tables: dict[str, pa.Table], store) -> list[Path]: ...


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


def run_id(job: str, params: dict, model_hash: str | None, data_identity: dict) -> str:
    """Stable id of a run: a hash of the job, its parameters, the model and the data."""
    key = json.dumps({"job": job, "params": params, "model": model_hash, "data": data_identity}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]


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
