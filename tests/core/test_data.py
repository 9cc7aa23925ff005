"""core.data: the IDX, gzipped IDX and npz loaders agree, and the bundled digits are split
alike every time; every malformed ``--data`` is one BadInput line naming the file and the
problem; ``--data mnist`` is Keras's cache, else Keras's own download (offline: one line,
exit 2).

Each case builds the bad data set in tmp_path and loads it the way the CLI does,
``load_dataset(str(path))``. Through ``dreamctl`` itself (exit code 2, one line on stderr):
tests/cli/test_bad_input.py.
"""

from __future__ import annotations

import gzip
import io
import os
import signal
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.data import IDX_NAMES, load_dataset, load_idx_folder, load_npz
from core.errors import BadInput
from tests.support.data_files import N_TEST, N_TRAIN, cache_contents, good_arrays, idx_bytes, idx_folder, npz_file


def assert_bad(path, *words: str) -> str:
    """load_dataset(path) raises BadInput: one line naming the file and containing ``words``."""
    with pytest.raises(BadInput) as caught:
        load_dataset(str(path))
    message = str(caught.value)
    assert "\n" not in message
    assert path.name in message, message
    for word in words:
        assert word in message, message
    return message


def test_good_data_loads_from_idx_gz_idx_and_npz_alike(tmp_path):
    loaded = [load_dataset(str(idx_folder(tmp_path / "idx"))),
              load_dataset(str(idx_folder(tmp_path / "gz", gz=True))),
              load_dataset(str(npz_file(tmp_path / "mnist.npz")))]
    assert len({data.checksum for data in loaded}) == 1
    for data in loaded:
        assert data.x_train.shape == (N_TRAIN, 28, 28) and data.x_train.dtype == np.uint8
        assert data.y_test.shape == (N_TEST,) and data.y_test.dtype == np.int64
        assert data.x_train.flags.writeable  # callers may standardize in place


# ----- the loaders agree; the bundled digits ------------------------------------------
def _write_idx(path, array, gz):
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        data = gzip.compress(data)
    path.write_bytes(data)


@pytest.mark.parametrize("gz", [False, True])
def test_the_three_loaders_agree(tmp_path, dataset, gz):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (50, 28, 28)),
        "y_train": rng.integers(0, 10, 50),
        "x_test": rng.integers(0, 256, (20, 28, 28)),
        "y_test": rng.integers(0, 10, 20),
    }
    names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    for key, name in names.items():
        _write_idx(tmp_path / name, arrays[key], gz)
    np.savez(tmp_path / "mnist.npz", **{k: v.astype(np.uint8) for k, v in arrays.items()})
    from_idx = load_idx_folder(tmp_path)
    from_npz = load_npz(tmp_path / "mnist.npz")
    for loaded in (from_idx, from_npz, dataset):
        assert loaded.x_train.dtype == np.uint8 and loaded.x_train.shape[1:] == (28, 28)
        assert loaded.y_train.dtype == np.int64 and loaded.y_train.ndim == 1
        assert len(loaded.x_test) == len(loaded.y_test)
    for key in arrays:
        np.testing.assert_array_equal(getattr(from_idx, key), getattr(from_npz, key))
    assert from_idx.checksum == from_npz.checksum
    assert load_dataset(str(tmp_path)).checksum == from_idx.checksum


def test_bundled_digits_split_is_stratified_and_fixed(dataset):
    assert (len(dataset.x_train), len(dataset.x_test)) == (4000, 1000)
    assert np.all(np.bincount(dataset.y_test, minlength=10) == 100)
    assert dataset.identity() == load_dataset("mnist-5k").identity()


# ----- IDX files -----------------------------------------------------------------------

def test_truncated_gz_is_bad_input_not_eof(tmp_path):
    folder = idx_folder(tmp_path / "f", gz=True)
    part = folder / f"{IDX_NAMES['x_train']}.gz"
    part.write_bytes(part.read_bytes()[:300])
    message = assert_bad(folder, "truncated")
    assert part.name in message


def test_corrupt_gz_is_bad_input(tmp_path):
    folder = idx_folder(tmp_path / "f", gz=True)
    part = folder / f"{IDX_NAMES['y_test']}.gz"
    data = bytearray(part.read_bytes())
    data[-8] ^= 0xFF  # the CRC in the gzip trailer
    part.write_bytes(bytes(data))
    assert_bad(folder, "damaged gzip")


def test_gzip_is_recognized_by_content_not_name(tmp_path):
    folder = idx_folder(tmp_path / "f")
    name = IDX_NAMES["x_train"]
    os.rename(folder / name, folder / f"{name}.gz")  # not gzipped despite the name
    assert load_dataset(str(folder)).checksum == load_dataset(str(idx_folder(tmp_path / "g"))).checksum


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("shape, words", [
    ((N_TRAIN, 28, 28), ["holds only 0", "truncated"]),  # a file holding only its header
    ((60000, 28, 28), ["(60000, 28, 28)", "holds only 39,200", "truncated"]),  # the header claims more than is there
    ((N_TRAIN - 1, 28, 28), ["holds more data"]),  # ... or less
])
def test_idx_body_must_match_its_header(tmp_path, gz, shape, words):
    body = good_arrays()["x_train"] if shape != (N_TRAIN, 28, 28) else np.zeros(0, np.uint8)
    folder = idx_folder(tmp_path / "f", gz=gz, x_train=idx_bytes(body, shape=shape))
    assert_bad(folder, "IDX header", *words)


@pytest.mark.parametrize("gz", [False, True])
def test_absurd_idx_dims_allocate_nothing(tmp_path, gz):
    absurd = (2**32 - 1, 2**32 - 1, 2**32 - 1)
    folder = idx_folder(tmp_path / "f", gz=gz, x_train=idx_bytes(good_arrays()["x_train"], shape=absurd))
    tracemalloc.start()
    try:
        assert_bad(folder, "IDX header says shape (4294967295")
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 20 << 20  # the real files are ~40 kB; nothing sized by the claim


@pytest.mark.parametrize("data, words", [
    (b"", ["not an IDX file"]),
    (b"\x01\x02\x08\x03" + b"\0" * 12, ["not an IDX file"]),
    (idx_bytes(np.zeros((N_TRAIN, 28, 28)), type_byte=0x0C), ["type byte 0x0C", "unsigned bytes"]),
    (idx_bytes(np.zeros((N_TRAIN, 28, 28)), type_byte=0x0D), ["type byte 0x0D", "float32"]),
    (b"\0\0\x08\x03\0\0\0", ["header cut short"]),
    (b"\0\0\x08\xff" + b"\0\0\0\x01" * 255, ["255 dimensions"]),
])
def test_idx_magic_type_and_header_are_checked(tmp_path, data, words):
    assert_bad(idx_folder(tmp_path / "f", x_train=data), *words)


@pytest.mark.parametrize("key, array, words", [
    ("x_train", np.zeros((N_TRAIN, 28, 28, 1)), ["(50, 28, 28, 1)", "expected images (N, 28, 28)"]),
    ("x_train", np.zeros((N_TRAIN, 14, 56)), ["(50, 14, 56)", "expected images"]),
    ("x_test", np.zeros((N_TEST * 28 * 28,)), ["expected images"]),
    ("y_train", np.zeros((5, 10)), ["one-hot", "class indices 0..9"]),
    ("y_train", np.zeros((5, 5, 2)), ["expected labels (N,)"]),
    ("y_test", np.full(N_TEST, 10), ["labels range 10..10", "0..9"]),
    ("y_train", np.zeros(N_TRAIN - 10), ["50 images", "40 labels"]),
])
def test_idx_shapes_labels_and_counts_are_checked(tmp_path, key, array, words):
    message = assert_bad(idx_folder(tmp_path / "f", **{key: idx_bytes(array)}), *words)
    assert IDX_NAMES[key] in message  # the file at fault, not just the folder


def test_zero_sample_idx_split_is_bad_input(tmp_path):
    folder = idx_folder(tmp_path / "f", x_test=idx_bytes(np.zeros((0, 28, 28))), y_test=idx_bytes(np.zeros(0)))
    assert_bad(folder, "holds 0 images")


# ----- folders and things that are not regular files ----------------------------------

def test_folder_missing_one_file(tmp_path):
    folder = idx_folder(tmp_path / "f")
    (folder / IDX_NAMES["y_test"]).unlink()
    assert_bad(folder, f"no {IDX_NAMES['y_test']}", "four MNIST IDX files")


def test_a_folder_where_an_idx_file_should_be(tmp_path):
    folder = idx_folder(tmp_path / "f")
    (folder / IDX_NAMES["y_test"]).unlink()
    (folder / IDX_NAMES["y_test"]).mkdir()
    message = assert_bad(folder, "is a folder, not a regular file")
    assert IDX_NAMES["y_test"] in message


@pytest.fixture
def fails_instead_of_hanging():
    """Turn a blocking read (the old behaviour on a FIFO) into a test failure after 10 s."""
    def on_alarm(signum, frame):
        raise TimeoutError("loading blocked on a read")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(tmp_path, fails_instead_of_hanging):
    # Root reads every file, so "unreadable" is simulated by what cannot be read as a file.
    folder = idx_folder(tmp_path / "f")
    (folder / IDX_NAMES["x_test"]).unlink()
    os.mkfifo(folder / IDX_NAMES["x_test"])
    assert_bad(folder, "FIFO", "not a regular file")
    os.mkfifo(tmp_path / "mnist.npz")
    assert_bad(tmp_path / "mnist.npz", "FIFO", "not a regular file")


def test_a_broken_link_is_bad_input(tmp_path):
    (tmp_path / "mnist.npz").symlink_to(tmp_path / "gone.npz")
    assert_bad(tmp_path / "mnist.npz", "cannot open")


def test_nothing_there_is_bad_input(tmp_path):
    assert_bad(tmp_path / "nothing.npz", "no such file or folder")


# ----- npz files -----------------------------------------------------------------------

@pytest.mark.parametrize("keep_bytes", [100, -10, -2000])
def test_truncated_npz(tmp_path, keep_bytes):
    path = npz_file(tmp_path / "mnist.npz")
    path.write_bytes(path.read_bytes()[:keep_bytes])
    assert_bad(path, "truncated")


def test_npz_member_cut_short(tmp_path):
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for key, array in good_arrays().items():
            buffer = io.BytesIO()
            np.save(buffer, array)
            archive.writestr(f"{key}.npy", buffer.getvalue()[:200] if key == "x_train" else buffer.getvalue())
    assert_bad(path, "x_train", "truncated")


def test_npz_header_claiming_a_terabyte_allocates_nothing(tmp_path):
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": (10**12,)})
    path = tmp_path / "mnist.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for key in IDX_NAMES:
            archive.writestr(f"{key}.npy", header.getvalue() + b"\0" * 100)
    tracemalloc.start()
    try:
        assert_bad(path, "1,000,000,000,000 bytes", "truncated")
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 20 << 20


@pytest.mark.parametrize("content, words", [
    (b"", ["not an .npz file"]),
    (b"not a zip", ["not an .npz file"]),
])
def test_not_an_npz(tmp_path, content, words):
    (tmp_path / "mnist.npz").write_bytes(content)
    assert_bad(tmp_path / "mnist.npz", *words)


def test_a_single_npy_is_not_an_npz(tmp_path):
    np.save(tmp_path / "images.npy", good_arrays()["x_train"])
    assert_bad(tmp_path / "images.npy", "single .npy", "numpy.savez")


def test_npz_missing_an_array(tmp_path):
    assert_bad(npz_file(tmp_path / "mnist.npz", y_test=None), "missing arrays y_test")


@pytest.mark.parametrize("split", ["train", "test"])
def test_zero_sample_npz(tmp_path, split):
    empty = {f"x_{split}": np.zeros((0, 28, 28), np.uint8), f"y_{split}": np.zeros(0, np.uint8)}
    assert_bad(npz_file(tmp_path / "mnist.npz", **empty), f"x_{split} holds 0 images")


@pytest.mark.parametrize("key, array, words", [
    ("x_train", good_arrays()["x_train"].astype(str), ["dtype <U3", "integers or floats"]),
    ("x_train", good_arrays()["x_train"].astype("S3"), ["dtype |S3"]),
    ("x_train", good_arrays()["x_train"].astype(object), ["dtype object"]),
    ("x_test", good_arrays()["x_test"] > 128, ["dtype bool"]),
    ("x_test", good_arrays()["x_test"].astype(complex), ["dtype complex128"]),
    ("y_train", good_arrays()["y_train"].astype(str), ["y_train has dtype <U"]),
    ("y_test", good_arrays()["y_test"] > 4, ["y_test has dtype bool"]),
])
def test_npz_non_numeric_arrays(tmp_path, key, array, words):
    assert_bad(npz_file(tmp_path / "mnist.npz", **{key: array}), key, *words)


FLOAT_PIXELS = good_arrays()["x_train"].astype(np.float64)


@pytest.mark.parametrize("images, words", [
    (np.where(FLOAT_PIXELS > 250, np.nan, FLOAT_PIXELS), ["NaN or infinite"]),
    (np.where(FLOAT_PIXELS > 250, np.inf, FLOAT_PIXELS), ["NaN or infinite"]),
    (FLOAT_PIXELS - 5, ["range -5..250", "0..255"]),
    (FLOAT_PIXELS + 100, ["range 100..355", "0..255"]),
    (good_arrays()["x_train"].astype(np.int16) + 1, ["range 1..256"]),
    (np.clip(FLOAT_PIXELS + 0.25, 0, 255), ["fractional pixel values", "whole numbers 0..255"]),
    (FLOAT_PIXELS / 255, ["lie in [0, 1]", "multiply by 255"]),
    ((FLOAT_PIXELS > 128).astype(np.uint8), ["0 or 1", "binarized"]),
])
def test_npz_pixel_values_must_be_whole_numbers_0_to_255(tmp_path, images, words):
    assert_bad(npz_file(tmp_path / "mnist.npz", x_train=images), "x_train", *words)


def test_npz_integer_valued_float_images_and_flat_rows_are_accepted(tmp_path):
    arrays = good_arrays()
    loaded = load_dataset(str(npz_file(tmp_path / "flat.npz", x_train=FLOAT_PIXELS.reshape(N_TRAIN, 784).astype(np.float32),
                                       y_train=arrays["y_train"].astype(np.float64))))
    np.testing.assert_array_equal(loaded.x_train, arrays["x_train"])
    np.testing.assert_array_equal(loaded.y_train, arrays["y_train"])


LABELS = good_arrays()["y_train"].astype(np.float64)


@pytest.mark.parametrize("labels, words", [
    (LABELS + 10, ["labels range 10..19"]),
    (LABELS - 1, ["labels range -1..8"]),
    (np.where(LABELS > 5, np.nan, LABELS), ["NaN or infinite labels"]),
    (np.clip(LABELS + 0.5, 0, 9), ["fractional labels", "whole numbers 0..9"]),
    (LABELS[:10], ["50 images but y_train has 10 labels"]),
    (np.array(3), ["shape ()"]),
])
def test_npz_labels_must_be_classes_0_to_9_one_per_image(tmp_path, labels, words):
    assert_bad(npz_file(tmp_path / "mnist.npz", y_train=labels), "y_train", *words)


# ----- --data mnist: Keras's cache, else Keras's own download (issue 21) ----------------

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The full MNIST in Keras's format, for the tests that copy it into a temporary HOME; never
# read by dreamctl itself (see ../shared/data/README.md).
SHARED_MNIST = os.environ.get("DREAMCTL_MNIST_NPZ", os.path.join(os.path.dirname(REPO), "shared", "data", "mnist.npz"))
needs_full_mnist = pytest.mark.skipif(not os.path.isfile(SHARED_MNIST),
                                      reason=f"no full MNIST at {SHARED_MNIST} (set DREAMCTL_MNIST_NPZ)")


@needs_full_mnist
def test_mnist_is_keras_cache_under_the_home_of_the_run_and_loads_without_keras(home):
    import shutil
    import subprocess
    import sys

    (home / ".keras" / "datasets").mkdir(parents=True)
    shutil.copyfile(SHARED_MNIST, home / ".keras" / "datasets" / "mnist.npz")
    data = load_dataset("mnist")  # HOME was set after core.data's import: it counts
    assert data.identity()["name"] == "mnist"
    assert (len(data.x_train), len(data.x_test)) == (60_000, 10_000)
    assert data.checksum == load_dataset(SHARED_MNIST).checksum
    assert data.y_train[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    probe = ("import sys; from core.data import load_dataset; d = load_dataset('mnist'); "
             "print(len(d.x_train), 'keras' in sys.modules or 'tensorflow' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, cwd=REPO,
                          env={**os.environ, "HOME": str(home)})
    assert done.stdout.split() == ["60000", "False"], done  # a cached file: nothing downloads, no TensorFlow


def test_mnist_follows_keras_home(tmp_path, monkeypatch, home):
    from core.data import keras_mnist_path

    assert keras_mnist_path() == home / ".keras" / "datasets" / "mnist.npz"
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    assert keras_mnist_path() == tmp_path / "kh" / "datasets" / "mnist.npz"
    (tmp_path / "kh" / "datasets").mkdir(parents=True)
    npz_file(tmp_path / "kh" / "datasets" / "mnist.npz")
    assert load_dataset("mnist").checksum == load_dataset(str(npz_file(tmp_path / "other.npz"))).checksum


def test_an_unwritable_home_falls_back_to_tmp_as_keras_does(monkeypatch, home):
    # Root may write anywhere, so "unwritable" is what os.access says about this HOME.
    from core.data import keras_mnist_path

    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: False if str(path).startswith(str(home))
                        else real_access(path, mode))
    assert keras_mnist_path() == Path("/tmp/.keras/datasets/mnist.npz")


def test_download_url_and_hash_are_those_of_keras_load_data():
    import inspect

    import keras

    from core.data import KERAS_MNIST_SHA256, KERAS_MNIST_URL

    source = inspect.getsource(keras.datasets.mnist.load_data)
    assert KERAS_MNIST_SHA256 in source
    folder, name = KERAS_MNIST_URL.rsplit("/", 1)
    assert f'"{folder}/"' in source and name == "mnist.npz"


def test_a_cache_folder_that_cannot_be_made_is_bad_input(home):
    (home / ".keras").mkdir()
    (home / ".keras" / "datasets").write_text("a file where Keras's folder goes")
    with pytest.raises(BadInput) as caught:
        load_dataset("mnist")
    message = str(caught.value)
    assert "\n" not in message and "cannot write to" in message and "--data PATH.npz" in message, message
    assert str(home / ".keras" / "datasets" / "mnist.npz") in message


class Served:
    """A local HTTP server for one file: ``url``; ``short`` announces 1,000 bytes more than it
    sends (a connection cut mid-download); ``stall`` sends half, then waits."""

    def __init__(self, body: bytes, short: bool = False, stall: bool = False):
        import http.server
        import threading

        served = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(body) + (1000 if short else 0)))
                self.end_headers()
                if stall:
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    served.release.wait(60)
                    return
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.release = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/mnist.npz"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def serve():
    servers = []

    def start(body: bytes, **kwargs) -> Served:
        servers.append(Served(body, **kwargs))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def sha256_of(body: bytes) -> str:
    import hashlib

    return hashlib.sha256(body).hexdigest()


def test_download_lands_in_the_cache_with_progress_on_stderr_only(tmp_path, monkeypatch, capfd, home, serve):
    import core.data

    body = npz_file(tmp_path / "served.npz").read_bytes()
    monkeypatch.setattr(core.data, "KERAS_MNIST_URL", serve(body).url)
    monkeypatch.setattr(core.data, "KERAS_MNIST_SHA256", sha256_of(body))
    data = load_dataset("mnist")
    captured = capfd.readouterr()
    assert captured.out == ""
    assert "Downloading data from http://127.0.0.1" in captured.err
    assert f"{len(body)}/{len(body)}" in captured.err  # Keras's progress bar, at its end
    cache = home / ".keras" / "datasets"
    assert cache_contents(home / ".keras") == ["mnist.npz"]
    assert (cache / "mnist.npz").read_bytes() == body
    assert data.identity()["name"] == "mnist" and len(data.x_train) == N_TRAIN


@pytest.mark.parametrize("short", [False, True], ids=["wrong-hash", "cut-short"])
def test_a_failed_download_leaves_nothing_in_the_cache(tmp_path, monkeypatch, home, serve, short):
    import core.data

    body = npz_file(tmp_path / "served.npz").read_bytes()
    monkeypatch.setattr(core.data, "KERAS_MNIST_URL", serve(body, short=short).url)
    if short:
        monkeypatch.setattr(core.data, "KERAS_MNIST_SHA256", sha256_of(body))
    with pytest.raises(BadInput) as caught:
        load_dataset("mnist")  # the wrong hash: Keras's own (not this file's)
    message = str(caught.value)
    assert "\n" not in message and "download failed" in message
    assert ("retrieval incomplete" if short else "hash does not match") in message, message
    assert cache_contents(home / ".keras") == []
    (home / ".keras" / "datasets").rmdir()  # and the next try starts from nothing


def test_a_killed_download_leaves_no_mnist_npz(tmp_path, home, serve):
    import subprocess
    import sys
    import time

    body = npz_file(tmp_path / "served.npz").read_bytes() * 40  # long enough to arrive in pieces
    server = serve(body, stall=True)
    probe = (f"import core.data as d; d.KERAS_MNIST_URL = {server.url!r}; "
             f"d.KERAS_MNIST_SHA256 = {sha256_of(body)!r}; d.load_dataset('mnist')")
    process = subprocess.Popen([sys.executable, "-c", probe], cwd=REPO, env={**os.environ, "HOME": str(home)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    datasets = home / ".keras" / "datasets"
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:  # until part of the file is on disk
            staged = [path for path in datasets.glob(".mnist.npz-download-*/*") if path.stat().st_size > 0] \
                if datasets.is_dir() else []
            if staged:
                break
            time.sleep(0.2)
        assert staged, "the download never started"
        process.kill()
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)
    assert not (datasets / "mnist.npz").exists()  # the half file stayed in its hidden folder
