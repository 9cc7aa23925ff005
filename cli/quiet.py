"""Import TensorFlow without the C++ start-up chatter it writes straight to file
descriptor 2 (oneDNN and CUDA notices) before any log setting applies. Errors still
raise as Python exceptions.

Every command imports this module before anything imports TensorFlow, so the driver's
TensorFlow environment (core.defaults.TENSORFLOW_ENV: oneDNN's kernels on every x86 CPU)
is set here, once; a value the user set wins. A local Ray started by the driver passes it
on to the actors, which also set it themselves (cluster/worker.py)."""

from __future__ import annotations

import os

from core.defaults import tensorflow_environment

tensorflow_environment()


def import_tensorflow_quietly() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    saved_stderr = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import keras  # noqa: F401
            import tensorflow

            tensorflow.config.list_physical_devices("GPU")  # probes CUDA (and says so) now
    finally:
        os.dup2(saved_stderr, 2)
        os.close(saved_stderr)
