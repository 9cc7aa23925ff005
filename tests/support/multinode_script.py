"""Run dreamctl jobs on a 3-node Ray cluster on this machine (``ray.cluster_utils.Cluster``)
and print one JSON report; run by tests/end_to_end/test_multinode.py in a process of its own.

    python tests/support/multinode_script.py MODEL OUT

Nodes: a head and two workers, 1 CPU each, all on 127.0.0.1 (token auth comes from the
environment the test sets). Steps, each through ``cli.app.main`` with ``--address``:

1. ``kmeans sweep`` (plain tasks) on the three nodes;
2. ``precursor`` (one CNNWorker actor per node); worker node 1 is removed as soon as it
   has committed a shard and another shard is done, while shards are still to come;
3. a node declaring 2 GPUs (and 2 CPUs) joins: ``--gpus-per-actor 3`` must end with exit 2
   at once, then ``precursor --gpus-per-actor 0.5`` places 4 actors on it; each actor's
   ``settings()`` is recorded.

The report also lists every process of the cluster (this process's descendants) so the
test can check that none is left once this process has ended.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

import cluster.scheduler  # noqa: E402
import cluster.store  # noqa: E402
from cli.app import main  # noqa: E402
from tests.support.processes import listening_sockets, process_tree  # noqa: E402

# Ray's processes bind to all interfaces on Linux unless clusters are "disabled" (read by
# each process at import): the nodes started from here inherit this and stay on 127.0.0.1,
# while this driver, which imported Ray already, connects through dreamctl's own path.
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"

LOOPBACK = {"node_ip_address": "127.0.0.1", "include_dashboard": False}
PRECURSOR = ["precursor", "--maps", "3,7", "--grid", "2", "--full-epochs", "20", "--patterns-per-shard", "16"]
KMEANS = ["kmeans", "sweep", "--k", "2,3,4,5,6,7", "--samples", "400", "--silhouette", "200",
          "--silhouette-repeats", "1", "--n-init", "1"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run(args: list[str]) -> tuple[int, float]:
    """``dreamctl ARGS`` in this process, on its own connection: (exit code, seconds)."""
    started = time.monotonic()
    code = main(args)
    ray.shutdown()  # the next job connects anew, as a separate dreamctl would
    return code, time.monotonic() - started


def main_script(model: str, out: Path) -> dict:
    report: dict = {}
    # No reaper and no exit hooks (shutdown_at_exit=False): a node's reaper signals its whole
    # process group when the node is removed, this driver included; the finally below stops
    # every node instead. The head's job API server gets a free port of its own.
    ray_cluster = Cluster(initialize_head=True, shutdown_at_exit=False,
                          head_node_args={"num_cpus": 1, "dashboard_port": free_port(), **LOOPBACK})
    try:
        workers = [ray_cluster.add_node(num_cpus=1, **LOOPBACK) for _ in range(2)]
        ray_cluster.wait_for_nodes()
        address = ray_cluster.address
        report["address"] = address
        report["nodes"] = {"head": ray_cluster.head_node.node_id, "worker1": workers[0].node_id,
                           "worker2": workers[1].node_id}
        common = ["--address", address, "--model", model]

        # 1. tasks on three nodes
        report["kmeans_exit"], _ = run([*KMEANS, "--address", address, "--out", str(out / "kmeans3")])

        # 2. actors on three nodes, worker node 1 removed mid-run
        write_part = cluster.store.RunStore.write_part
        removal: dict = {}

        def write_then_remove(self, phase, shard, table):
            node = json.loads((table.schema.metadata or {}).get(cluster.store.SHARD_KEY, b"{}")).get("node", "")
            write_part(self, phase, shard, table)
            written = removal.setdefault("written", [])
            written.append((phase, shard.shard_id, node))
            if ("removed_after" not in removal and phase == "scores" and len(written) >= 2
                    and any(n == workers[0].node_id for _, _, n in written)):
                ray_cluster.remove_node(workers[0])
                removal["removed_after"] = len(written)

        cluster.store.RunStore.write_part = write_then_remove
        try:
            report["precursor_exit"], _ = run([*PRECURSOR, *common, "--out", str(out / "removed")])
        finally:
            cluster.store.RunStore.write_part = write_part
        report["removal"] = removal

        # 3. a node with 2 GPUs (none real): refusal, then 4 actors of half a GPU
        gpu_node = ray_cluster.add_node(num_cpus=2, num_gpus=2, **LOOPBACK)
        ray_cluster.wait_for_nodes()
        report["nodes"]["gpu"] = gpu_node.node_id
        report["too_many_gpus_exit"], report["too_many_gpus_seconds"] = run(
            [*PRECURSOR, *common, "--gpus-per-actor", "3", "--out", str(out / "refused")])

        pools: list = []
        original_init = cluster.scheduler.ActorPool.__init__

        def remember(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            pools.append(self)

        settings: list = []
        write_gpu = cluster.store.RunStore.write_part

        def write_and_ask(self, phase, shard, table):
            write_gpu(self, phase, shard, table)
            if not settings:  # every actor answers (and has started) by now
                settings.extend(ray.get([actor.settings.remote() for actor in pools[0].actors]))

        cluster.scheduler.ActorPool.__init__ = remember
        cluster.store.RunStore.write_part = write_and_ask
        try:
            report["gpu_exit"], _ = run([*PRECURSOR, *common, "--gpus-per-actor", "0.5", "--cpus-per-actor", "0.5",
                                         "--precision", "tf32", "--out", str(out / "gpu")])
        finally:
            cluster.scheduler.ActorPool.__init__ = original_init
            cluster.store.RunStore.write_part = write_gpu
        report["gpu_settings"] = settings
        report["pids"] = process_tree(os.getpid())
        report["listeners"] = listening_sockets(report["pids"])
    finally:
        ray.shutdown()
        ray_cluster.shutdown()
    return report


if __name__ == "__main__":
    result = main_script(sys.argv[1], Path(sys.argv[2]))
    print("REPORT " + json.dumps(result))
