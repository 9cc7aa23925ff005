"""cluster.worker: the actors' TensorFlow runs oneDNN's kernels unless their environment turns
them off (the driver's side and core.defaults: tests/core/test_tensorflow_env.py)."""

from __future__ import annotations


def test_actors_run_onednn_unless_their_environment_says_otherwise(trained_model_path, ray_local):
    import platform

    import ray

    from cluster.worker import remote_worker_class

    expected = True if platform.machine().lower() in ("x86_64", "amd64") else False
    worker_class = remote_worker_class()
    default = worker_class.options(num_cpus=1).remote(1, False, 32)
    user_off = worker_class.options(num_cpus=1, runtime_env={"env_vars": {"TF_ENABLE_ONEDNN_OPTS": "0"}}).remote(1, False, 32)
    try:
        settings = ray.get([default.settings.remote(), user_off.settings.remote()])
    finally:
        for actor in (default, user_off):
            ray.kill(actor)
    assert (settings[0]["onednn"], settings[0]["onednn_env"]) == (expected, "1")
    assert (settings[1]["onednn"], settings[1]["onednn_env"]) == (False, "0")
