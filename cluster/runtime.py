"""Attach to Ray: ``--address``, else ``RAY_ADDRESS``, else a local Ray with its dashboard
on 127.0.0.1. A Ray started here is stopped when the job ends."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import ray

from core.errors import BadInput

# Workers inherit these: keep TensorFlow's C++ log quiet in every actor.
WORKER_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONWARNINGS": "ignore"}


@dataclass(frozen=True)
class RayInfo:
    address: str
    dashboard_url: str | None
    started_here: bool
    cpus: float
    gpus: float


def _dashboard_url(context) -> str | None:
    url = getattr(context, "dashboard_url", None) or None
    if url and not url.startswith("http"):
        url = f"http://{url}"
    return url


@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[RayInfo]:
    """Connect to (or start) Ray for the duration of a job and yield what was found."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    started_here = False
    if ray.is_initialized():
        context = None
    elif address:
        try:
            # No runtime_env here: under `ray job submit` it would replace the job's own.
            context = ray.init(
                address=address,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except (ConnectionError, ValueError, RuntimeError) as error:
            raise BadInput(f"cannot connect to Ray at {address}: {str(error).splitlines()[0]}") from None
    else:
        # Ray enables token authentication for a new local cluster and says so at every
        # start; keep the protection, drop the notice.
        logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
        context = ray.init(
            num_cpus=num_cpus,
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            runtime_env={"env_vars": WORKER_ENV},
            logging_level=logging.WARNING,
            log_to_driver=False,
        )
        started_here = True
    try:
        resources = ray.cluster_resources()
        yield RayInfo(
            address=address or "local",
            dashboard_url=_dashboard_url(context) if context is not None else None,
            started_here=started_here,
            cpus=float(resources.get("CPU", 0)),
            gpus=float(resources.get("GPU", 0)),
        )
    finally:
        if started_here:
            ray.shutdown()
