"""The edges of the process (issue 20), tried as a hostile user would: signals at every
stage, odd streams and environments, in real processes. Each ends in one line and exit 2
(bad input) or 3 (interrupted), fast, without a traceback, and leaves no process of the run
behind. A server that is not Ray, paths and variables that no file system or Ray can take
(in-process, exit 2): tests/cli/test_bad_input.py; the suite's own Ray:
tests/cluster/test_runtime.py.

The real processes start their own local Ray (127.0.0.1, as a user's would) in a process
group of their own; only their own pids are signalled, and any Ray process they would leave
is killed by pid after the assertions.
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.processes import Dreamctl

INTERRUPTED = "interrupted: finished shards are saved; rerun the same command to resume"
NOT_STARTED = "interrupted before anything started: nothing was written"


def test_no_home_folder_at_all(tmp_path):
    """No $HOME and no entry in the user database (a container under an arbitrary uid): the
    import raised a RuntimeError traceback even for --help; now --help works and a job that
    needs Ray's token folder says so in one line."""
    probe = ("import os, pwd, sys\n"
             "os.environ.pop('HOME', None)\n"
             "def nobody(uid): raise KeyError(uid)\n"
             "pwd.getpwuid = nobody\n"
             "from cli.app import main\n"
             "sys.exit(main(sys.argv[1:]))\n")
    env = {key: value for key, value in os.environ.items()
           if key not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")}
    command = [sys.executable, "-c", probe]
    shown = subprocess.run([*command, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "Usage" in shown.stdout, shown.stderr[-2000:]
    refused = subprocess.run([*command, "kmeans", "sweep", "--k", "2,3"], cwd=tmp_path, env=env, capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert refused.stderr.strip().splitlines()[-1] == (
        "error: no home folder ($HOME is not set) for Ray's token ~/.ray/auth_token: set $HOME, or "
        "$RAY_AUTH_TOKEN_PATH to a token file")
    assert "Traceback" not in refused.stderr


def test_lines_on_stderr_are_not_cut_at_the_terminal_width(tmp_path):
    # COLUMNS=20 (or a narrow terminal): rich cut every status line into pieces of 20 characters
    env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", "import sys; from cli.app import main; sys.exit(main(sys.argv[1:]))",
                           "mlp", "train", "--epochs", "1", "--out", "res"], cwd=tmp_path, env={**env, "COLUMNS": "20"},
                          capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "data mnist-5k: 4,000 train / 1,000 test images" in done.stderr.splitlines()


def assert_stopped_with(process: Dreamctl, exit_code: int, line: str) -> None:
    """Exit ``exit_code`` within a minute, ``line`` last on stderr and only once, no
    traceback, and nothing of the run left: no process, no private Ray folder."""
    try:
        code = process.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        dispositions = [line for line in Path(f"/proc/{process.pid}/status").read_text().splitlines()
                        if line.startswith(("SigBlk", "SigIgn", "SigCgt"))]
        pytest.fail(f"dreamctl still runs 60 s after the signal ({', '.join(dispositions)}): {process.stderr[-2000:]}")
    stderr = process.stderr
    assert code == exit_code, stderr[-3000:]
    assert "Traceback" not in stderr and "SIGTERM received" not in stderr and "Fatal Python error" not in stderr
    lines = stderr.strip().splitlines()
    assert lines[-1] == line and lines.count(line) == 1, stderr[-3000:]
    assert not process.left_behind(), f"left running: {process.left_behind(0)}"
    for folder in process.temp_dirs:
        assert not os.path.lexists(folder), f"{folder} was left behind"


# 4 maps × 4 restarts × 300 steps on 2 actors: a run of several seconds after its actors load
RUN = ["oip", "--maps", "0-3", "--epochs", "300", "--restarts", "4", "--actors", "2", "--chunk-size", "32"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_signals_at_every_stage_end_in_one_line_and_leave_nothing(tmp_path, trained_model_path):
    args = [*RUN, "--model", str(trained_model_path)]

    # 1. before anything started (Python and TensorFlow still importing): Ctrl-C is exit 2, and
    # so is a hang-up (a closed terminal; was: killed by SIGHUP) unless nohup ignores it
    for how in ("SIGINT", "SIGHUP", "nohup"):
        before = Dreamctl(tmp_path, *args, ignore_hangup=how == "nohup")
        try:
            time.sleep(1.0)
            assert before.process.poll() is None and not before.children(), "the run got further than its imports"
            if how == "nohup":
                os.killpg(before.pid, signal.SIGHUP)
                time.sleep(1.0)
                assert before.process.poll() is None, "nohup's ignored SIGHUP ended dreamctl"
            # as Ctrl-C in a terminal, a hang-up: to the whole foreground group
            os.killpg(before.pid, signal.SIGHUP if how == "SIGHUP" else signal.SIGINT)
            assert_stopped_with(before, 2, NOT_STARTED)
        finally:
            before.end()

    # 2. while the local Ray starts (was: exit 15, Ray's agents left running for a minute)
    starting = Dreamctl(tmp_path, *args)
    try:
        starting.wait_until(starting.has_ray_starting, "Ray starting")
        starting.process.send_signal(signal.SIGTERM)
        assert_stopped_with(starting, 3, INTERRUPTED)
    finally:
        starting.end()
    assert starting.temp_dirs, "the private folder of the run's Ray was not seen"

    # ... and a closed terminal once Ray is up: SIGHUP to the whole group, Ray's processes
    # with the driver (was: they died of it, and the driver took 31 s to stop, once more than
    # a minute; now they start with SIGHUP blocked and the driver stops them)
    hung_up = Dreamctl(tmp_path, *args)
    try:
        hung_up.wait_until(lambda: "local Ray:" in hung_up.stderr, "Ray up")
        os.killpg(hung_up.pid, signal.SIGHUP)
        assert_stopped_with(hung_up, 3, INTERRUPTED)
    finally:
        hung_up.end()

    # 3. once Ray is up, while the actors load the model: Ctrl-C to the whole group
    loading = Dreamctl(tmp_path, *args)
    try:
        loading.wait_until(lambda: "local Ray:" in loading.stderr, "Ray up")
        for folder in loading.temp_dirs:  # private while it ran
            info = os.stat(folder)
            assert (info.st_mode & 0o777, info.st_uid) == (0o700, os.getuid())
        os.killpg(loading.pid, signal.SIGINT)
        assert_stopped_with(loading, 3, INTERRUPTED)
    finally:
        loading.end()
    assert not (tmp_path / "results" / "oip").exists() or not list((tmp_path / "results" / "oip").glob("*/_SUCCESS"))


def filled_pipe() -> tuple[int, int]:
    """A pipe (read end, write end) whose buffer is full: a writer blocks on it."""
    read_end, write_end = os.pipe()
    fcntl.fcntl(write_end, fcntl.F_SETFL, os.O_NONBLOCK)
    try:
        while True:
            os.write(write_end, b"x" * 65536)
    except BlockingIOError:
        pass
    fcntl.fcntl(write_end, fcntl.F_SETFL, 0)
    return read_end, write_end


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_ends_a_run_whose_output_nobody_reads(tmp_path):
    # stdout and stderr are pipes that are full (their reader stopped reading): dreamctl blocks
    # on its first line; SIGTERM used to leave it stuck there for good (the line on the way out
    # blocked again)
    out_read, out_write = filled_pipe()
    err_read, err_write = filled_pipe()
    try:
        process = Dreamctl(tmp_path, "mlp", "train", "--epochs", "3000", "--out", "res", stdout=out_write, stderr=err_write)
        os.close(out_write), os.close(err_write)
        try:
            started = time.monotonic()

            def blocked() -> bool:  # in the kernel's pipe_write / anon_pipe_write (wchan "0": not shown)
                wchan = Path(f"/proc/{process.pid}/wchan").read_text()
                return "pipe_write" in wchan or wchan == "0" and time.monotonic() - started > 30

            process.wait_until(blocked, "a blocked write")
            process.process.send_signal(signal.SIGTERM)
            code = process.process.wait(timeout=60)
            assert code == 3  # the job had started: its first line is about the data it read
        except subprocess.TimeoutExpired:
            pytest.fail("dreamctl stayed blocked on its full stderr after SIGTERM")
        finally:
            process.end()
    finally:
        os.close(out_read), os.close(err_read)


def test_a_reader_that_closes_stdout_early_gets_one_line_on_stderr(tmp_path):
    # `dreamctl ... | head -0`: rich's silent exit 1 (no word on stderr); now one line
    read_end, write_end = os.pipe()
    os.close(read_end)
    process = Dreamctl(tmp_path, "mlp", "train", "--epochs", "2", "--out", "res", stdout=write_end)
    os.close(write_end)
    try:
        assert process.process.wait(timeout=240) == 1
    finally:
        process.end()
    stderr = process.stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    assert stderr.strip().splitlines()[-1] == "error: the output was cut short: its reader closed the pipe"
    assert list((tmp_path / "res" / "mlp").glob("*/_SUCCESS"))  # the results themselves are saved
