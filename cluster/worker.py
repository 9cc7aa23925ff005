"""Ray workers: ``CNNWorker`` actors that hold the CNN, and a plain task for model-free shards."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from core.defaults import tensorflow_environment

# An actor's process imports this module (to unpickle the actor class) before anything in it
# imports TensorFlow. Under `ray job submit` or --address no runtime_env reaches the actors,
# so the environment TensorFlow needs (oneDNN's kernels on every x86 CPU) is set here; a
# value the worker's environment already has wins.
tensorflow_environment()

import pyarrow as pa  # noqa: E402
import ray  # noqa: E402

from jobs.base import ModelSession, TrainedModel, measured  # noqa: E402


def node_id() -> str:
    return ray.get_runtime_context().get_node_id()


class CNNWorker:
    """Holds the CNN and computes shards with it.

    ``num_cpus`` sets TensorFlow's thread pools; ``use_gpu`` turns on memory growth on the
    GPU Ray assigned, and CPU-only actors see no GPU at all. ``precision`` ("float32" or
    "tf32", see RayOptions) turns TensorFloat-32 matrix products off or on; TensorFlow's
    own default is on, which changes GPU results at ~1e-3. The model arrives with the
    first shard as ``[ObjectRef of the model file's bytes or a TrainedModel]`` (nested, so only a reference
    travels) and is loaded once per actor process, again after a restart.
    """

    def __init__(self, num_cpus: int, use_gpu: bool, chunk_size: int, precision: str = "float32"):
        if not use_gpu:
            os.environ["CUDA_VISIBLE_DEVICES"] = ""
        import tensorflow as tf

        # before any op or model exists: kernels pick their math mode when they are built
        tf.config.experimental.enable_tensor_float_32_execution(precision == "tf32")
        self.precision = precision
        tf.config.threading.set_intra_op_parallelism_threads(max(1, int(num_cpus)))
        tf.config.threading.set_inter_op_parallelism_threads(max(1, int(num_cpus)))
        for gpu in tf.config.list_physical_devices("GPU"):
            tf.config.experimental.set_memory_growth(gpu, True)
        self.use_gpu = use_gpu  # memory growth is asked for every GPU TensorFlow finds
        self.chunk_size = chunk_size
        self.session: ModelSession | None = None

    def _load(self, model_ref: list) -> ModelSession:
        from cluster.model_file import load_model

        source = ray.get(model_ref[0])
        if isinstance(source, TrainedModel):
            return ModelSession(source.build(), source.metadata, self.chunk_size)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "cnn.keras"
            path.write_bytes(source)
            model, metadata = load_model(path)
        return ModelSession(model, metadata, self.chunk_size)

    def pid(self) -> int:
        return os.getpid()

    def settings(self) -> dict:
        """What this actor's TensorFlow runs with: {precision, tf32 (TensorFloat-32 on),
        onednn (oneDNN's kernels on; None = TensorFlow cannot say), onednn_env (the actor's
        TF_ENABLE_ONEDNN_OPTS), cuda_visible_devices (None = not set), memory_growth (GPU name
        -> on), threads, use_gpu (GPUs granted: memory growth requested for each one found),
        node_id}."""
        import tensorflow as tf

        from core.ascent import onednn_enabled

        return {
            "precision": self.precision,
            "onednn": onednn_enabled(),
            "onednn_env": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
            "tf32": bool(tf.config.experimental.tensor_float_32_execution_enabled()),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "memory_growth": {gpu.name: bool(tf.config.experimental.get_memory_growth(gpu))
                              for gpu in tf.config.list_physical_devices("GPU")},
            "threads": tf.config.threading.get_intra_op_parallelism_threads(),
            "use_gpu": self.use_gpu,
            "node_id": ray.get_runtime_context().get_node_id(),
        }

    def compute(self, compute: Callable[[Any, Any], pa.Table], payload: Any, model_ref: list) -> pa.Table:
        if self.session is None:
            self.session = self._load(model_ref)
        return measured(lambda: compute(self.session, payload), node_id())


def remote_worker_class(max_task_retries: int = 3):
    """The actor class: restarted forever after a crash, its in-flight tasks retried."""
    return ray.remote(max_restarts=-1, max_task_retries=max_task_retries)(CNNWorker)


@ray.remote(max_retries=3)
def compute_task(compute: Callable[[Any, Any], pa.Table], shared: Any, payload: Any) -> pa.Table:
    """A model-free shard (e.g. one KMeans fit) on data shared through the object store."""
    return measured(lambda: compute(shared, payload), node_id())
