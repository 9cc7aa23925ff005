"""Bad input: every refusal of a command's options, files, variables or resources is exit 2 and
one line on stderr (``error: …``), no traceback, before anything is trained, started or
written. In-process through ``cli.app.main`` (the ``cli`` fixture); the last two use the
session's local Ray.

Refusals that need a fixture of their own are tested beside it: ``--out s3://…`` against an
S3 server (tests/end_to_end/test_object_store.py), ``report`` of a folder that is no precursor
run (tests/end_to_end/test_report_command.py), more GPUs than a node of a cluster has
(tests/end_to_end/test_multinode.py), ``precursor --grid 0`` in a process that must not load
TensorFlow (tests/cli/test_help.py). The checks themselves, as ``BadInput`` or
``BadParameter``: tests/core/test_data.py (``--data``), tests/cluster/test_runtime.py
(``--address``, resources), tests/jobs/ (a job's options).
"""

from __future__ import annotations

import os
import signal
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from core.data import IDX_NAMES
from tests.support.cli_output import error_line, one_error_line
from tests.support.data_files import N_TEST, cache_contents, idx_folder, npz_file
from tests.support.servers import HTTP2Greeter, closed_port

LONG = "x" * 300  # one path component longer than NAME_MAX (255 bytes)
NOT_UTF8 = os.fsdecode(b"\xff")  # the byte 0xff as Python receives it in argv (a lone surrogate)


# ----- options and files of any command --------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (["oip", "--maps", "128"], "map 128 is out of range: conv3 has maps 0-127"),
        (["oip", "--maps", "0-128"], "map 128 is out of range"),
        (["oip", "--layer", "conv9"], "--layer: 'conv9' is not one of conv1, conv2, conv3"),
        (["oip", "--maps", "a-b"], "cannot read 'a-b'"),
        (["precursor", "--maps", "x"], "--maps: cannot read 'x'"),
        (["precursor", "--grid", "9"], "patterns (limit"),
        (["precursor", "--levels", "0.2,zz"], "expected comma-separated numbers"),
        (["precursor", "--epochs-typo", "3"], "No such option"),
        (["oip", "--epochs", "ten"], "Invalid value for '--epochs'"),
        (["--data", "missing.npz", "train"], "data 'missing.npz': no such file or folder"),
        (["oip", "--model", "missing.keras"], "no model file at missing.keras"),
    ],
)
def test_bad_input_exits_2_with_one_line(cli, capsys, args, message):
    assert cli(*args) == 2
    assert message in one_error_line(capsys)


def test_corrupt_and_wrong_shape_models_exit_2(cli, capsys, tmp_path, trained_model_path):
    import keras

    (tmp_path / "garbage.keras").write_bytes(b"this is not a zip file")
    assert cli("oip", "--maps", "1", "--model", "garbage.keras") == 2
    assert "not a dreamctl model file" in one_error_line(capsys)

    truncated = tmp_path / "truncated.keras"
    truncated.write_bytes(trained_model_path.read_bytes()[:5000])
    assert cli("oip", "--maps", "1", "--model", truncated) == 2
    one_error_line(capsys)

    # a valid Keras file of the wrong shape, with dreamctl metadata copied in
    wrong = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(4, 3, name="conv1")])
    wrong.save(tmp_path / "wrong.keras")
    with zipfile.ZipFile(trained_model_path) as source, zipfile.ZipFile(tmp_path / "wrong.keras", "a") as target:
        target.writestr("dreamctl.json", source.read("dreamctl.json"))
    assert cli("oip", "--maps", "1", "--model", "wrong.keras") == 2
    assert "model input is (32, 32, 3), expected (28, 28, 1)" in one_error_line(capsys)


# ----- refused before anything is trained, started or written ----------------------------------
@pytest.mark.parametrize("args, message", [
    (["oip", "--maps", "0", "--epochs", "-1"], "--epochs: must be"),
    (["oip", "--maps", "0", "--restarts", "0"], "--restarts: must be"),
    (["oip", "--maps", "0", "--epochs", "5", "--warmup", "6"], "--warmup: must be at most the epochs"),
    (["precursor", "--maps", "0", "--top", "0"], "--top: must be"),
    (["precursor", "--maps", "0", "--levels", "0.2,1.5"], "--levels"),
    (["dream", "--map", "3", "--iterations", "0"], "--iterations: must be"),
    (["oip", "--maps", "0", "--actors", "0"], "--actors: must be"),
    (["oip", "--maps", "0", "--cpus-per-actor", "0"], "--cpus-per-actor: must be"),
    (["oip", "--maps", "0", "--chunk-size", "0"], "--chunk-size: must be"),
    (["oip", "--maps", "0", "--precision", "fp8"], "--precision"),
    (["oip", "--maps", "0", "--address", "127.0.0.1:{closed}"], "--address: Ray address 127.0.0.1:{closed}: connection refused"),
    (["oip", "--maps", "0", "--address", "http://127.0.0.1:8265"], "ray job submit"),
    (["oip", "--maps", "0", "--out", "plain-file"], "--out: plain-file is not a folder"),
    (["--data", "missing.npz", "oip", "--maps", "0"], "data 'missing.npz': no such file or folder"),
])
def test_bad_options_are_refused_before_anything_is_trained_or_written(cli, capsys, tmp_path, monkeypatch, args, message):
    import cluster.runtime
    import core.model

    monkeypatch.setattr(core.model, "train_cnn", lambda *a, **k: pytest.fail("a model was trained"))
    monkeypatch.setattr(cluster.runtime, "ray_session", lambda *a, **k: pytest.fail("Ray was started"))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    (tmp_path / "plain-file").write_text("not a folder")
    port = closed_port()
    started = time.monotonic()
    assert cli(*(arg.format(closed=port) for arg in args)) == 2
    # with no model, the bad --data is found as the default model's training starts (one notice line first)
    line = error_line(capsys) if args[0] == "--data" else one_error_line(capsys)
    assert message.format(closed=port) in line
    assert time.monotonic() - started < 30
    assert sorted(os.listdir(tmp_path)) == ["plain-file"]  # no models/, no results/


def test_out_naming_a_file_and_model_naming_a_folder_exit_2(cli, capsys, tmp_path, trained_model_path):
    (tmp_path / "taken").write_text("a file")
    (tmp_path / "folder").mkdir()
    assert cli("kmeans", "sweep", "--k", "2,3", "--out", "taken") == 2
    assert one_error_line(capsys) == "error: --out: taken is not a folder"
    assert cli("oip", "--maps", "0", "--model", trained_model_path, "--out", "taken/results") == 2
    assert one_error_line(capsys) == "error: --out: taken is not a folder"
    assert cli("train", "--epochs", "1", "--model", "folder") == 2
    assert one_error_line(capsys) == "error: --model: folder is a folder; name the .keras file to write"
    assert cli("train", "--epochs", "1", "--model", "taken/cnn.keras") == 2
    assert one_error_line(capsys) == "error: --model: taken is not a folder"
    assert sorted(os.listdir(tmp_path)) == ["folder", "taken"] and not os.listdir(tmp_path / "folder")
    assert (tmp_path / "taken").read_text() == "a file"


# ----- paths, values and variables that no file system or Ray can take (issue 20) --------------
@pytest.fixture
def nothing_may_start(monkeypatch):
    """Fail the test if a model is trained or Ray is started."""
    import cluster.runtime
    import core.model

    monkeypatch.setattr(core.model, "train_cnn", lambda *a, **k: pytest.fail("a model was trained"))
    monkeypatch.setattr(cluster.runtime, "ray_session", lambda *a, **k: pytest.fail("Ray was started"))
    monkeypatch.setattr(cluster.runtime, "_start_local", lambda *a, **k: pytest.fail("Ray was started"))
    for variable in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(variable, raising=False)


@pytest.mark.parametrize("args, message", [
    # a name longer than the file system allows, bytes that are not UTF-8: were tracebacks (or a
    # UnicodeEncodeError deep in ray.init), now refused as the options are read
    (["train", "--epochs", "1", "--model", f"{LONG}.keras"], "error: --model: a name in 'xxx"),
    (["train", "--epochs", "1", "--model", f"{NOT_UTF8}.keras"], r"error: --model: '\xff.keras' is not valid UTF-8"),
    (["oip", "--maps", "0", "--model", f"models/{LONG}.keras"], "is 306 bytes long; file systems allow 255"),
    (["--data", f"{LONG}.npz", "oip", "--maps", "0"], "error: --data: a name in"),
    (["--data", f"{NOT_UTF8}.npz", "mlp", "train"], r"error: --data: '\xff.npz' is not valid UTF-8"),
    (["dream", "--map", "3", "--image", f"{LONG}.jpg"], "error: --image: a name in"),
    (["dream", "--map", "3", "--image", f"{NOT_UTF8}.jpg"], r"error: --image: '\xff.jpg' is not valid UTF-8"),
    (["oip", "--maps", "0", "--out", LONG], "error: --out: a name in"),
    (["kmeans", "sweep", "--k", "2,3", "--out", f"r/{NOT_UTF8}"], r"error: --out: 'r/\xff' is not valid UTF-8"),
    (["oip", "--maps", "0", "--out", "file:///tmp/%ff"], r"error: --out: '/tmp/\xff' is not valid UTF-8"),
    # a model file Keras 3 cannot write: was found after the last training epoch, the model lost
    (["train", "--epochs", "1", "--model", "cnn.h5"], "error: --model: 'cnn.h5': a model file's name must end in .keras"),
    (["oip", "--maps", "0", "--model", "cnn.KERAS"], "must end in .keras"),
    # more best patterns than the coarse grid has: was a run of Ray and the actors first
    (["precursor", "--maps", "0", "--grid", "1", "--levels", "0.2,0.8", "--top", "3"],
     "error: --top: 3 patterns per map, but a 1x1 grid with 2 levels has only 2 patterns"),
    (["precursor", "--maps", "0", "--grid", "2", "--levels", "0.2,0.8", "--top", "17"], "has only 16 patterns"),
    # a host name the IDNA codec refuses: was a UnicodeError traceback
    (["oip", "--maps", "0", "--address", "a..b:6379"], "error: --address: Ray address 'a..b:6379' is malformed: "
                                                       "'a..b' is not a valid host name"),
    (["kmeans", "sweep", "--k", "2,3", "--address", f"{'a' * 64}.example:6379"], "is not a valid host name"),
    (["oip", "--maps", "0", "--address", "xn--ü.example:6379"], "(Label starts with ACE prefix)"),
])
def test_paths_and_values_nothing_can_use_are_refused_before_anything_starts(cli, capsys, tmp_path, nothing_may_start,
                                                                           args, message):
    started = time.monotonic()
    assert cli(*args) == 2
    assert message in one_error_line(capsys)
    assert time.monotonic() - started < 30
    assert os.listdir(tmp_path) == []  # no models/, no results/


@pytest.fixture
def odd_files(tmp_path) -> Path:
    folder = tmp_path / "odd"
    folder.mkdir()
    (folder / "empty").write_text(" \n")
    (folder / "token").write_text("abc")
    (folder / "plain-file").write_text("not a folder")
    os.mkfifo(folder / "fifo")
    return folder


@pytest.mark.parametrize("variables, message", [
    ({"RAY_AUTH_TOKEN_PATH": "{odd}/missing"},
     "error: $RAY_AUTH_TOKEN_PATH: cannot read the token file '{odd}/missing' (No such file or directory)"),
    ({"RAY_AUTH_TOKEN_PATH": "{odd}"}, "error: $RAY_AUTH_TOKEN_PATH: '{odd}' is not a regular file"),
    ({"RAY_AUTH_TOKEN_PATH": "{odd}/fifo"}, "is not a regular file"),  # and nothing blocks on it
    ({"RAY_AUTH_TOKEN_PATH": "{odd}/empty"}, "error: $RAY_AUTH_TOKEN_PATH: the token file '{odd}/empty' is empty"),
    pytest.param({"RAY_AUTH_TOKEN_PATH": "{odd}/token", "chmod": "000"}, "(Permission denied)",
                 marks=pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")),
    ({"RAY_AUTH_TOKEN": "  "}, "error: $RAY_AUTH_TOKEN is set but blank"),
    ({"RAY_ADDRESS": "a..b:6379"}, "error: $RAY_ADDRESS: Ray address 'a..b:6379' is malformed"),
    # a local Ray writes its token to ~/.ray/auth_token when there is none: was a traceback
    ({"HOME": "{odd}/plain-file/home"}, "but {odd}/plain-file is not a folder this user can write"),
])
@pytest.mark.parametrize("args", [["kmeans", "sweep", "--k", "2,3"], ["oip", "--maps", "0"]])
def test_variables_ray_would_choke_on_are_named_before_anything_starts(cli, capsys, tmp_path, monkeypatch,
                                                                     nothing_may_start, odd_files, args, variables,
                                                                     message):
    for name, value in variables.items():
        if name == "chmod":
            os.chmod(odd_files / "token", int(value, 8))
        else:
            monkeypatch.setenv(name, value.format(odd=odd_files))
    started = time.monotonic()
    assert cli(*args) == 2
    assert message.format(odd=odd_files) in one_error_line(capsys)
    assert time.monotonic() - started < 10
    assert os.listdir(tmp_path) == ["odd"]


def test_a_working_folder_that_is_not_utf8_is_refused(cli, capsys, tmp_path, monkeypatch, nothing_may_start):
    folder = tmp_path / f"a{NOT_UTF8}b"  # ray.init raised a UnicodeEncodeError sending it to the workers
    folder.mkdir()
    monkeypatch.chdir(folder)
    assert cli("kmeans", "sweep", "--k", "2,3") == 2
    assert one_error_line(capsys) == (rf"error: the working folder '{tmp_path}/a\xffb' is not "
                                      "valid UTF-8: Ray cannot run from it (run dreamctl from another folder)")


def test_a_server_that_only_greets_fails_in_seconds_with_one_line(cli, capsys, tmp_path, trained_model_path,
                                                                   nothing_may_start):
    # an HTTP/2 server that is not a Ray GCS: ray.init retried its cluster id for minutes (34 s
    # to 10 min, 20+ lines of C++ logs); now one Ray RPC with a deadline fails first
    server = HTTP2Greeter()
    try:
        for address, expected in ((f"127.0.0.1:{server.port}", "Ray GCS"),
                                  (f"ray://127.0.0.1:{server.port}", "Ray client server")):
            started = time.monotonic()
            assert cli("oip", "--maps", "0", "--model", trained_model_path, "--address", address) == 2
            assert time.monotonic() - started < 20
            line = one_error_line(capsys)
            assert line.startswith(f"error: --address: Ray address {address}")
            assert f"it is not a {expected}" in line and "no answer to a Ray request within 5 s" in line
    finally:
        server.close()
    assert os.listdir(tmp_path) == []


# ----- --data: exit 2 and one line, not "interrupted" or a traceback (the loader: tests/core/test_data.py) ---
def assert_one_line_exit_2(cli, capsys, path, *words: str) -> None:
    exit_code = cli("--data", path, "kmeans", "sweep", "--k", "2,3")
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert exit_code == 2, captured.err
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert path.name in lines[0] and all(word in lines[0] for word in words), lines[0]
    assert "interrupted" not in captured.err and "Traceback" not in captured.err
    assert captured.out == ""


def test_cli_truncated_gz_exits_2_not_interrupted(cli, capsys, tmp_path):
    # gzip's EOFError used to reach typer, which treats EOFError as Ctrl-D: exit 3, "interrupted".
    folder = idx_folder(tmp_path / "f", gz=True)
    part = folder / f"{IDX_NAMES['x_test']}.gz"
    part.write_bytes(part.read_bytes()[:300])
    assert_one_line_exit_2(cli, capsys, folder, part.name, "truncated")


def test_cli_nan_labels_exit_2(cli, capsys, tmp_path):
    path = npz_file(tmp_path / "mnist.npz", y_test=np.full(N_TEST, np.nan))
    assert_one_line_exit_2(cli, capsys, path, "y_test", "NaN")


@pytest.fixture
def bounded():
    """Fail a test that takes more than 120 s (an offline download must not hang)."""
    def on_alarm(signum, frame):
        raise TimeoutError("the download did not give up within 120 s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_cli_mnist_offline_exits_2_saying_where_to_put_the_file(cli, capfd, monkeypatch, home, bounded):
    # Offline for real on any machine: Keras's own URL through a proxy nobody listens on
    # (urllib honours https_proxy); here DNS fails as well.
    monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{closed_port()}")
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{closed_port()}")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    exit_code = cli("--data", "mnist", "kmeans", "sweep", "--k", "2,3")
    captured = capfd.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip()]
    assert exit_code == 2, captured.err
    cache = home / ".keras" / "datasets" / "mnist.npz"
    assert lines[-1].startswith("error: --data mnist: ") and str(cache) in lines[-1], lines
    assert "download failed" in lines[-1] and "--data PATH.npz" in lines[-1], lines[-1]
    assert len(lines) == 1, lines  # Keras's "Downloading data from" only once a download starts
    assert "https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz" in lines[0]
    assert "Traceback" not in captured.err and captured.out == ""
    assert cache_contents(home / ".keras") == []  # no file, no half file, no staging folder


# ----- precursor --prune, oip --warmup ---------------------------------------------------------
@pytest.mark.parametrize(
    "prune, message",
    [
        ("x", "--prune: cannot read 'x' (use step:keep pairs"),
        ("2:10:3", "--prune: cannot read '2:10:3'"),
        ("5:10,2:5", "--prune: steps must be >= 1 and increasing, got 5, 2"),
        ("2:5,5:10", "--prune: keep counts must be >= 1 and non-increasing, got 5, 10"),
        ("0:8", "--prune: steps must be >= 1"),
        ("2:0", "--prune: keep counts must be >= 1"),
        ("", "--prune: no cut given"),
    ],
)
def test_bad_prune_exits_2_with_one_line(cli, capsys, prune, message):
    assert cli("precursor", "--maps", "3", "--prune", prune) == 2
    assert message in one_error_line(capsys)


def test_bad_warmup_exits_2_with_one_line(cli, capsys):
    assert cli("oip", "--maps", "3", "--epochs", "10", "--warmup", "11") == 2
    assert "--warmup: must be at most the epochs (10), got 11" in one_error_line(capsys)
    assert cli("oip", "--maps", "3", "--warmup-kind", "softplus") == 2
    assert "--warmup-kind: 'softplus' is not one of pre_relu, leaky_relu" in one_error_line(capsys)


# ----- dream -----------------------------------------------------------------------------------
def _bad_files(tmp_path):
    from PIL import Image

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    tiny = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((20, 40), np.uint8)).save(tiny)
    return text, tiny


@pytest.mark.parametrize(
    "args, message",
    [
        (["--image", "/no/such/photo.jpg"], "no file at /no/such/photo.jpg"),
        (["--image", "{text}"], "is not an image"),
        (["--image", "{tiny}"], "40x20 px; the CNN needs at least 28x28"),
        (["--layer", "conv9"], "--layer: 'conv9' is not one of"),
        (["--map", "128"], "map 128 is out of range: conv3 has maps 0-127"),
        (["--maps", "0-200"], "map 128 is out of range"),
        (["--objective", "conv3:x=1"], "cannot read the term 'conv3:x=1'"),
        (["--objective", "conv3:56=1,,conv2"], "--objective: cannot read"),
        (["--objective", "conv7:3=1"], "unknown layer 'conv7'"),
        (["--objective", "conv3:56=0,conv2=0"], "all weights are 0"),
        (["--map", "5", "--maps", "all"], "only one of --map, --maps, --objective"),
        (["--tile-grid", "30", "--size", "560"], "tiles must be at least 28x28"),
        (["--octaves", "9", "--size", "112"], "below the CNN's 28x28"),
        (["--size", "10"], "--size"),
    ],
)
def test_dream_bad_input_exits_2_with_one_line(cli, capsys, tmp_path, args, message):
    text, tiny = _bad_files(tmp_path)
    args = [arg.format(text=text, tiny=tiny) for arg in args]
    code = cli("dream", *args, "--model", tmp_path / "no-model.keras", "--out", tmp_path / "out")
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err
    assert "Traceback" not in captured.err


# ----- kmeans sweep ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (("--k", "1,5"), "at least 2 clusters"),
        (("--k", "5000"), "smaller than the number of images"),
        (("--samples", "100", "--k", "100"), "smaller than the number of images"),
        (("--k", "50:10"), "empty"),
        (("--k", "abc"), "cannot read"),
        (("--k", ""), "empty"),
        (("--k", "10:x:5"), "cannot read"),
        (("--silhouette", "lots"), "--silhouette"),
        (("--silhouette", "50", "--k", "60"), "too small"),
        (("--scale", "log"), "--scale"),
        (("--n-init", "0"), "--n-init"),
    ],
)
def test_sweep_bad_input_exits_2_with_one_line(cli, capsys, args, message):
    assert cli("kmeans", "sweep", *args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], captured.err
    assert captured.out == ""


# ----- mlp train, experiment clusters ----------------------------------------------------------
@pytest.mark.parametrize(
    "args, message",
    [
        (("mlp", "train", "--clusters", "1"), "at least 2 clusters"),
        (("mlp", "train", "--clusters", "5000"), "smaller than the number of images"),
        (("mlp", "train", "--clusters", "4000", "--fit-on", "train"), "smaller than the number of images"),
        (("mlp", "train", "--hidden", "70,x"), "--hidden"),
        (("mlp", "train", "--dtype", "float16"), "--dtype"),
        (("mlp", "train", "--fit-on", "test"), "--fit-on"),
        (("mlp", "train", "--learning-rate", "0"), "--learning-rate"),
        (("mlp", "train", "--epochs", "0"), "--epochs"),
        (("experiment", "clusters", "--k", "1,40"), "at least 2 clusters"),
        (("experiment", "clusters", "--k", "5000"), "smaller than the number of images"),
        (("experiment", "clusters", "--k", ""), "empty"),
        (("experiment", "clusters", "--k", "90:40:10"), "empty"),
        (("experiment", "clusters", "--k", "forty"), "cannot read"),
        (("experiment", "clusters", "--targets", "0.9,1.5"), "--targets"),
        (("experiment", "clusters", "--targets", "high"), "--targets"),
    ],
)
def test_mlp_bad_input_exits_2_with_one_line(cli, capsys, args, message):
    assert cli(*args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], captured.err
    assert captured.out == ""


# ----- refused by the session's local Ray, or after a finished run -----------------------------
@pytest.mark.parametrize("args, message", [
    (["--cpus-per-actor", "64"], "--cpus-per-actor: 64 CPUs per actor is more than any node has: the cluster has 1 node, 2 CPUs"),
    (["--actors", "3"], "--actors: 3 actors of 1 CPUs do not fit at once (at most 2)"),
    (["--gpus-per-actor", "1"], "--gpus-per-actor: 1 GPUs per actor, but the cluster has 1 node, 2 CPUs, 0 GPUs"),
])
def test_resources_the_cluster_cannot_grant_exit_2_before_any_actor_starts(cli, capsys, tmp_path, trained_model_path,
                                                                           ray_local, monkeypatch, args, message):
    import cluster.scheduler

    monkeypatch.setattr(cluster.scheduler.ActorPool, "__init__", lambda *a, **k: pytest.fail("an actor was started"))
    started = time.monotonic()
    assert cli("oip", "--maps", "0", "--epochs", "1", "--restarts", "1", *args, "--model", trained_model_path) == 2
    assert time.monotonic() - started < 20  # not Ray waiting forever for resources
    assert message in error_line(capsys)
    assert not (tmp_path / "results").exists()  # nothing written


def test_results_already_written_survive_bad_input(cli, capsys, tmp_path, trained_model_path, ray_local):
    args = ["oip", "--maps", "2,5", "--epochs", "10", "--restarts", "2", "--model", trained_model_path]
    assert cli(*args) == 0
    before = {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()}
    assert cli(*args[:-2], "--model", "missing.keras") == 2
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "results").rglob("*") if p.is_file()} == before
