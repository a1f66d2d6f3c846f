"""Which process holds which TCP socket, read from /proc (Linux): the port a server bound with
``--port 0``, and the worker process that accepted a given connection.

A port found free beforehand (bind, read, close) can be taken by another process before the
server binds it; port 0 lets the kernel pick one as the server binds, and this module reads it
back. Knowing which worker accepted a connection lets a test say which worker answered.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

LISTEN, ESTABLISHED = "0A", "01"


def _inodes(pid: int) -> set[str]:
    found = set()
    fds = Path(f"/proc/{pid}/fd")
    for fd in fds.iterdir() if fds.exists() else ():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith("socket:["):
            found.add(target[len("socket:[") : -1])
    return found


def _rows() -> list[tuple[int, int, str, str]]:
    """(local port, remote port, state, inode) of every TCP socket in this network namespace."""
    rows = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            f = line.split()
            local, remote = (int(a.rsplit(":", 1)[1], 16) for a in (f[1], f[2]))
            rows.append((local, remote, f[3], f[9]))
    return rows


def listening_port(pid: int) -> int | None:
    """The TCP port process ``pid`` listens on (None until it has bound one)."""
    mine = _inodes(pid)
    ports = {local for local, _r, state, inode in _rows() if state == LISTEN and inode in mine}
    if len(ports) > 1:
        raise AssertionError(f"process {pid} listens on several ports: {sorted(ports)}")
    return ports.pop() if ports else None


def accepted_by(server_port: int, client_port: int, pids: Iterable[int]) -> int | None:
    """Which of ``pids`` holds the server end of the connection from ``client_port`` (None
    until one has accepted it)."""
    ends = {
        inode
        for local, remote, state, inode in _rows()
        if local == server_port and remote == client_port and state == ESTABLISHED
    }
    owners = [pid for pid in pids if _inodes(pid) & ends]
    if len(owners) > 1:
        raise AssertionError(f"connection from port {client_port} held by {owners}")
    return owners[0] if owners else None
