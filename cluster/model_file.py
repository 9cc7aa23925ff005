"""The CNN on disk: a ``.keras`` file with dreamctl's metadata inside the same zip.

The metadata (``dreamctl.json`` in the archive) holds the standardization constants, the
training data's identity and the training metrics, so a model file is self-contained.
Loading uses Keras's safe mode.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import BadInput
from core.model import CONV_LAYERS, IMAGE_SIZE, Standardization
from cluster.files import atomic_path

if TYPE_CHECKING:  # Keras is imported where a model is loaded, not by every command
    import keras

METADATA_NAME = "dreamctl.json"


def save_model(model: keras.Model, path: Path, standardization: Standardization, data_identity: dict, metrics: dict) -> None:
    """Write the model and its metadata atomically to ``path`` (a ``.keras`` file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"standardization": standardization.to_dict(), "data": data_identity, "metrics": metrics}
    with atomic_path(path) as temporary:  # a unique hidden name, created exclusively; renamed on success
        model.save(temporary)
        with zipfile.ZipFile(temporary, "a") as archive:
            archive.writestr(METADATA_NAME, json.dumps(metadata, indent=2))


def file_hash(path: Path) -> str:
    """SHA-256 of the file's bytes, first 16 hex digits."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def read_metadata(path: Path) -> dict:
    """The dreamctl metadata of a model file (no TensorFlow needed)."""
    path = Path(path)
    if not path.is_file():
        raise BadInput(f"no model file at {path} (train one with: dreamctl train --model {path})")
    try:
        with zipfile.ZipFile(path) as archive:
            metadata = json.loads(archive.read(METADATA_NAME))
        Standardization(**metadata["standardization"])
        metadata["data"]["checksum"]
    except (zipfile.BadZipFile, KeyError, TypeError, ValueError, OSError) as error:
        raise BadInput(f"{path}: not a dreamctl model file ({type(error).__name__}: {error})") from None
    return metadata


def load_model(path: Path) -> tuple[keras.Model, dict]:
    """Load (model, metadata); a missing, corrupt or wrong-shape file raises BadInput."""
    import keras

    metadata = read_metadata(path)
    try:
        model = keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as error:  # Keras raises many types for a damaged archive
        raise BadInput(f"{path}: cannot load the model ({type(error).__name__}: {error})") from None
    check_architecture(model, path)
    return model, metadata


def check_architecture(model: keras.Model, path: Path) -> None:
    """The jobs need a 28×28×1 input and the named conv layers with their map counts."""
    if tuple(model.input_shape[1:]) != (IMAGE_SIZE, IMAGE_SIZE, 1):
        raise BadInput(f"{path}: model input is {model.input_shape[1:]}, expected (28, 28, 1)")
    layers = {layer.name: layer for layer in model.layers}
    for name, n_maps in CONV_LAYERS.items():
        if name not in layers or layers[name].output.shape[-1] != n_maps:
            raise BadInput(f"{path}: model has no layer {name} with {n_maps} maps")
