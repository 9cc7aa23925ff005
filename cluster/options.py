"""How and where a job runs: the options every job command shares, declared once.

Importing this module loads neither Ray nor TensorFlow (``dreamctl --help`` reads it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from core.defaults import CHUNK_SIZE
from core.params import check_params, param

DEFAULT_MODEL = Path("models/cnn.keras")
RAY_PANEL = "Ray"


@dataclass(frozen=True)
class RayOptions:
    """Where the job runs and what each CNN worker gets. ``actors`` None = the cluster's
    CPUs ÷ ``cpus_per_actor`` (GPUs ÷ ``gpus_per_actor`` with GPUs)."""

    address: str | None = param(None, "Ray cluster address (ray://host:10001, host:6379 or auto). Default: "
                                "$RAY_ADDRESS, else a local Ray on 127.0.0.1.", panel=RAY_PANEL)
    actors: int | None = param(None, "Number of CNNWorker actors. Default: cluster CPUs ÷ --cpus-per-actor.",
                               low=1, panel=RAY_PANEL)
    cpus_per_actor: float = param(1.0, "CPUs per actor (also its TensorFlow threads).", low=0.5, panel=RAY_PANEL)
    gpus_per_actor: float = param(0.0, "GPUs per actor (0 = CPU only; GPUs are hidden from CPU actors).", low=0.0,
                                  panel=RAY_PANEL)
    chunk_size: int = param(CHUNK_SIZE, "Images per compiled ascent step (batch rows).", low=1, panel=RAY_PANEL)

    def __post_init__(self) -> None:
        check_params(self)

    def n_actors(self, cpus: float, gpus: float) -> int:
        """Actors to start on a cluster with ``cpus`` CPUs and ``gpus`` GPUs."""
        if self.actors is not None:
            return self.actors
        if self.gpus_per_actor > 0:
            return max(1, int(gpus // self.gpus_per_actor))
        return max(1, int(math.floor(cpus / self.cpus_per_actor)))


@dataclass(frozen=True)
class RunOptions:
    """Where results go, whether to resume, and which model the CNN jobs use."""

    out: Path = param(Path("results"), "Results folder; the run goes to OUT/<job>/<run_id>/.")
    fresh: bool = param(False, "Discard this run's saved shards and start over (default: resume).")
    model: Path | None = param(None, f"CNN .keras file. Default: {DEFAULT_MODEL} (trained first if missing).")

    def __post_init__(self) -> None:
        check_params(self)
