"""TensorFlow's environment: oneDNN's kernels on every x86 CPU. The driver's and the actors'
first module (cli.quiet, cluster.worker) sets TF_ENABLE_ONEDNN_OPTS=1 through
core.defaults.tensorflow_environment before TensorFlow loads, unless the user set it (the
actors on Ray: tests/cluster/test_worker.py; the kernels a step runs:
tests/core/test_ascent.py)."""

from __future__ import annotations

import os

import pytest


@pytest.mark.parametrize("first_import", ["cli.quiet", "cluster.worker"])  # the driver, an actor
def test_tensorflow_runs_onednn_kernels_on_x86_when_nobody_said_otherwise(first_import):
    """TensorFlow alone turns oneDNN on only on AVX-512 VNNI CPUs and newer, not on AVX2 ones:
    the driver's and the actors' first module sets TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow
    loads, in a process whose environment does not set it."""
    import json
    import os
    import platform
    import subprocess
    import sys
    from pathlib import Path

    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    code = (f"import json, os, {first_import}, tensorflow\n"
            "from core.ascent import onednn_enabled\n"
            "print(json.dumps([os.environ.get('TF_ENABLE_ONEDNN_OPTS'), onednn_enabled()]))")
    done = subprocess.run([sys.executable, "-c", code], env={**env, "TF_CPP_MIN_LOG_LEVEL": "2"},
                          cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300, check=True)
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["1", x86]


@pytest.mark.parametrize("value", ["0", "1", "false"])
def test_a_users_onednn_setting_wins(monkeypatch, value):
    from core.defaults import tensorflow_environment

    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", value)
    tensorflow_environment()
    assert os.environ["TF_ENABLE_ONEDNN_OPTS"] == value
