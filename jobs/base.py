"""What every job is made of: phases that cut work into shards, and the worker-side session.

A job is a list of :class:`Phase` objects run in order. A phase yields :class:`Shard`
descriptions (small, picklable) from the tables of the phases before it; ``compute`` runs
on a worker and returns the shard's rows as a ``pyarrow.Table`` of the phase's schema.
Nothing here knows about Ray, files or printing.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import keras
import pyarrow as pa

from core.ascent import Ascent
from core.model import Standardization

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

    def __init__(self, model: keras.Model, metadata: dict, chunk_size: int = 256):
        self.model = model
        self.metadata = metadata
        self.standardization = Standardization(**metadata["standardization"])
        self.chunk_size = chunk_size
        self._ascents: dict[tuple[str, ...], Ascent] = {}

    def ascent(self, layers: Sequence[str]) -> Ascent:
        """The compiled ascent for these layers (built once per worker)."""
        key = tuple(layers)
        if key not in self._ascents:
            self._ascents[key] = Ascent(self.model, key, self.chunk_size)
        return self._ascents[key]


class Phase(Protocol):
    """One step of a job. ``name`` is its folder under the run dir; ``unit`` names the
    work items in the progress display; ``needs_model`` picks CNN actors (True) or plain
    tasks that receive ``shared()`` (put in the object store once) as their context."""

    name: str
    unit: str
    schema: pa.Schema
    needs_model: bool

    def shards(self, tables: dict[str, pa.Table]) -> list[Shard]: ...

    def compute(self, context: Any, payload: Any) -> pa.Table: ...

    def shared(self) -> Any: ...


def run_id(job: str, params: dict, model_hash: str | None, data_identity: dict) -> str:
    """Stable id of a run: a hash of the job, its parameters, the model and the data."""
    key = json.dumps({"job": job, "params": params, "model": model_hash, "data": data_identity}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:12]
