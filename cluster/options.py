"""How and where a job runs: the options every job command shares, declared once.

Importing this module loads neither Ray nor TensorFlow (``dreamctl --help`` reads it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from core.defaults import CHUNK_SIZE
from core.params import check_params, param, parse_path

DEFAULT_MODEL = Path("models/cnn.keras")
RAY_PANEL = "Ray"
_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+://")  # two letters at least: "C://" stays a path


def is_uri(out: object) -> bool:
    """True when ``out`` names a pyarrow filesystem URI (``s3://bucket/prefix``), not a path."""
    return isinstance(out, str) and bool(_URI.match(out))


def parse_out(text: str, spec: object = None) -> Path | str:
    """``--out`` as given: a local path (``file:///abs/path`` too) as a Path, any other
    ``scheme://`` URI as its text (cluster/storage.py opens it). ValueError: an unusable
    URI, or a path no folder could have (core.params.parse_path: not UTF-8, a name too long)."""
    if not is_uri(text):
        return parse_path(text)
    parts = urlsplit(text)
    if parts.scheme.lower() == "file":  # local: the local store, with its rename and O_EXCL guarantees
        if parts.netloc not in ("", "localhost") or parts.query:
            raise ValueError(f"{text!r}: a file:// URI names a local path (file:///abs/path)")
        return parse_path(unquote(parts.path, errors="surrogateescape"))
    if not parts.netloc:
        raise ValueError(f"{text!r} names no bucket ({parts.scheme}://bucket/prefix)")
    return text


def parse_model(text: str, spec: object = None) -> Path:
    """``--model``: a path (core.params.parse_path) ending in ``.keras``, the only format
    Keras 3 writes and reads with dreamctl's metadata: checked before any training, which
    would otherwise end by failing to save. Raises ValueError."""
    path = parse_path(text)
    if not path.name.endswith(".keras") or path.name == ".keras":
        raise ValueError(f"{text!r}: a model file's name must end in .keras (Keras 3 saves no other format)")
    return path


@dataclass(frozen=True)
class RayOptions:
    """Where the job runs and what each CNN worker gets. ``actors`` None = as many as the
    cluster's nodes can hold at once (cluster.runtime.check_resources)."""

    address: str | None = param(None, "Ray cluster address: host:6379, ray://host:10001, auto (the cluster "
                                "`ray start` recorded) or local (start one here even if $RAY_ADDRESS is set). "
                                "Default: $RAY_ADDRESS, else a local Ray on 127.0.0.1.", panel=RAY_PANEL)
    actors: int | None = param(None, "Number of CNNWorker actors. Default: as many as the nodes hold (CPUs ÷ "
                               "--cpus-per-actor, GPUs ÷ --gpus-per-actor).",
                               low=1, panel=RAY_PANEL)
    cpus_per_actor: float = param(1.0, "CPUs per actor (also its TensorFlow threads).", low=0.5, panel=RAY_PANEL)
    gpus_per_actor: float = param(0.0, "GPUs per actor (0 = CPU only; GPUs are hidden from CPU actors).", low=0.0,
                                  panel=RAY_PANEL)
    chunk_size: int = param(CHUNK_SIZE, "Images per compiled ascent step (batch rows).", low=1, high=16_384,
                            panel=RAY_PANEL)
    precision: str = param("float32", "Matrix products on GPUs: float32 (full precision) or tf32 (faster on Ampere and "
                           "newer, ~1e-3 relative error); no effect on CPUs.", choices=("float32", "tf32"),
                           panel=RAY_PANEL)

    def __post_init__(self) -> None:
        check_params(self)


@dataclass(frozen=True)
class RunOptions:
    """Where results go, whether to resume, and which model the CNN jobs use."""

    out: Path | str = param(Path("results"), "Results folder, or a pyarrow filesystem URI (s3://bucket/prefix, "
                            "gs://bucket/prefix; file:///path is a folder); the run goes to OUT/<job>/<run_id>/.",
                            parse=parse_out)
    fresh: bool = param(False, "Discard this run's saved shards and start over (default: resume).")
    model: Path | None = param(None, f"CNN .keras file. Default: {DEFAULT_MODEL} (trained first if missing).",
                               parse=parse_model)

    def __post_init__(self) -> None:
        check_params(self)
