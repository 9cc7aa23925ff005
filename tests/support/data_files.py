"""Small MNIST-shaped data sets written by the tests: the four IDX files (plain or gzipped) and
Keras-style ``.npz`` files, with some arrays or bytes replaced; what a Keras cache folder holds."""

from __future__ import annotations

import gzip
import os

import numpy as np

from core.data import IDX_NAMES

N_TRAIN, N_TEST = 50, 20


def good_arrays() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "x_train": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


def idx_bytes(array: np.ndarray, shape=None, type_byte: int = 0x08, magic: bytes = b"\0\0") -> bytes:
    """An IDX file: magic, type, dims, big-endian sizes, then the array's bytes."""
    shape = array.shape if shape is None else shape
    header = magic + bytes([type_byte, len(shape)]) + b"".join(int(n).to_bytes(4, "big") for n in shape)
    return header + array.astype(np.uint8).tobytes()


def idx_folder(root, gz: bool = False, **files: bytes):
    """The four IDX files of good_arrays() in ``root``; ``files`` replaces some by raw bytes."""
    root.mkdir(exist_ok=True)
    arrays = good_arrays()
    for key, name in IDX_NAMES.items():
        data = files.get(key, idx_bytes(arrays[key]))
        if gz:
            (root / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (root / name).write_bytes(data)
    return root


def npz_file(path, **arrays):
    """An .npz of good_arrays() with some arrays replaced (None drops one)."""
    contents = {**good_arrays(), **arrays}
    np.savez(path, **{key: value for key, value in contents.items() if value is not None})
    return path


def cache_contents(folder) -> list[str]:
    """Everything in a Keras datasets folder, hidden names included."""
    datasets = folder / "datasets"
    return sorted(os.listdir(datasets)) if datasets.is_dir() else []
