"""The processes of a run as Linux's /proc shows them: a process tree, the private folders of
its local Rays, its listening sockets."""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path

LOOPBACK_IPS = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}


def process_tree(root: int) -> list[int]:
    """``root`` and all its descendants (Linux /proc)."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # the process just ended
        for task in tasks:
            try:
                todo += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
            except OSError:
                pass  # the thread just ended
    return found


def private_ray_folders(pids) -> set[str]:
    """The private folders (cluster.runtime.private_temp_dir) of the local Rays whose
    processes are among ``pids``, read from their command lines."""
    found = set()
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        found.update(re.findall(r"(/[^\0 ]*?/dreamctl-ray-[^/\0 ]+)/ray/", command))
    return found


def listening_sockets(pids: list[int]) -> list[dict]:
    """Listening TCP sockets (IPv4 and IPv6) held by ``pids``: pid, command, ip, port."""
    by_inode = {}
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] != "0A":  # TCP_LISTEN
                continue
            hex_ip, hex_port = fields[1].split(":")
            raw = bytes.fromhex(hex_ip)  # 32-bit words in host (little-endian) order
            raw = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
            by_inode[fields[9]] = (socket.inet_ntop(family, raw), int(hex_port, 16))
    found = []
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue  # ended meanwhile
        for link in links:
            if link.startswith("socket:[") and link[8:-1] in by_inode:
                ip, port = by_inode[link[8:-1]]
                found.append({"pid": pid, "command": os.path.basename(command), "ip": ip, "port": port})
    return found
