"""Warm starts for the tests' fishopt processes: each is forked from a server that has already
imported torch, optuna and SQLAlchemy, instead of a fresh interpreter importing them again.

A fresh ``python -m fishopt.cli worker`` spends about 4 s of CPU importing torch (and the
``torch._dynamo`` that the first ``optimizer.step`` imports) before its first trial; the suite
starts some sixty of them on two cores. The server imports those third-party libraries once
per test process and forks on request. The child then does what a fresh interpreter would:
its own argv, environment, working directory, stdin/stdout/stderr and parent-death signal, and
``runpy`` runs ``fishopt.cli`` as ``__main__`` (``python -m``), importing fishopt afresh. It
is a real process: signals, SIGKILL, exit codes and ``/proc`` are its own. What it does not
repeat is the interpreter's start and the libraries' imports; the tests that are about those
(no import of torch where none is needed, no warnings, the ``fishopt`` script itself) start a
fresh interpreter, as users do.

``Forked`` answers ``poll``/``wait``/``send_signal``/``kill`` like ``subprocess.Popen``. The
server is the child's parent, so it reaps it and sends the exit code back.

Not ``multiprocessing``'s fork server (which ``--jobs`` uses): its children run a function and
leave through ``os._exit``, skipping the ``atexit`` handlers and the wait for non-daemon threads
that end a real ``fishopt`` process. Here the child returns from the server loop and the
interpreter ends as after any ``python -m``.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Imported once in the server: third-party modules every fishopt worker imports (torch, and the
# compiler front-end its first optimizer step imports; Optuna's RDB storage with its Alembic
# migrations; the CLI's Typer, Rich and Pydantic; PIL and psycopg), and nothing of fishopt's own.
WARM = (
    "numpy", "torch", "torch._dynamo", "optuna", "optuna.storages._rdb.storage",
    "alembic.command", "alembic.migration", "sqlalchemy", "pydantic", "typer", "rich.console",
    "rich.table", "rich.progress", "pygments.lexers", "PIL.Image", "psycopg",
)  # fmt: skip
_MAX = 1 << 20  # one request: argv, environment, working directory
# Read once, as the interpreter or torch starts: a child must ask for what the server has.
AT_START = ("PYTHONPATH", "PYTHONWARNINGS", "PYTHONUNBUFFERED", "PYTHONHASHSEED", "OMP_NUM_THREADS")


def _die_with_parent() -> None:
    """SIGKILL when the parent dies, even killed (Linux PR_SET_PDEATHSIG): no orphan trains on."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1: PR_SET_PDEATHSIG


class Forked:
    """A process the server forked, answering as ``subprocess.Popen`` does."""

    def __init__(self, server: Server, pid: int, args: list[str]) -> None:
        self.server, self.pid, self.args = server, pid, args
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.server.collect(0.0)
            self.returncode = self.server.exits.get(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        end = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if end is None else end - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
            self.server.collect(0.2 if left is None else min(0.2, left))
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # never a pid that has since gone to someone else
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class Server:
    """The test process's end of one fork server (started on first use, one per process)."""

    def __init__(self, log: Path) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
        env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
        self.at_start = {k: env.get(k) for k in AT_START}
        with log.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, __file__, str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        theirs.close()
        self.sock, self.log = ours, log
        self.exits: dict[int, int] = {}
        self._pids: list[int] = []

    def _receive(self, timeout: float) -> bool:
        """One message from the server, if one comes within ``timeout``."""
        if not select.select([self.sock], [], [], timeout)[0]:
            return False
        data = self.sock.recv(_MAX)
        if not data:
            raise RuntimeError(f"the fork server died:\n{self.log.read_text()[-3000:]}")
        msg = json.loads(data)
        if "exit" in msg:
            self.exits[msg["exit"]] = msg["code"]
        else:
            self._pids.append(msg["pid"])
        return True

    def collect(self, timeout: float) -> None:
        """Take the exit codes the server has sent, waiting up to ``timeout`` for the first."""
        if self._receive(timeout):
            while self._receive(0.0):
                pass

    def spawn(
        self,
        args: list[str],
        cwd: Path,
        env: dict[str, str],
        stdout: int,
        stderr: int,
        module: str = "fishopt.cli",
    ) -> Forked:
        """``python -m MODULE ARGS`` forked, with its own stdout/stderr descriptors."""
        differ = [k for k in AT_START if env.get(k) != self.at_start[k]]
        if differ:  # the child would not see them: start a fresh interpreter instead
            raise ValueError(f"a forked child keeps the server's {', '.join(differ)}")
        request = {"module": module, "args": args, "cwd": str(cwd), "env": env}
        request = json.dumps(request).encode()
        with open(os.devnull, "rb") as stdin:
            socket.send_fds(self.sock, [request], [stdin.fileno(), stdout, stderr])
        while not self._pids:
            if not self._receive(60.0):
                raise RuntimeError(f"the fork server did not answer:\n{self.log.read_text()}")
        return Forked(self, self._pids.pop(0), args)

    def close(self) -> None:
        self.sock.close()  # the server sees end of file and exits; its children get SIGKILL
        self.proc.wait()


_SERVER: Server | None = None


def server() -> Server:
    """This test process's fork server, started on first use."""
    global _SERVER
    if _SERVER is None or _SERVER.proc.poll() is not None:
        log = Path(tempfile.gettempdir()) / f"fishopt-forkserver.{os.getpid()}.log"
        _SERVER = Server(log)
    return _SERVER


def warm(args: list[str], env: dict[str, str], out: int) -> Forked:
    """``fishopt ARGS`` forked from this process's server in the repository, stdout and
    stderr to ``out`` (``bench.chaos.Launch``)."""
    return server().spawn(args, REPO, env, out, out)


# ------------------------------------------------------------------------- the server itself


def _serve(sock: socket.socket) -> tuple[dict, list[int]] | None:
    """Fork on each request; in the child, return the request. Reap children and report their
    exit codes. Returns None in the server when the test process has gone."""
    while True:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            code = os.waitstatus_to_exitcode(status)
            sock.send(json.dumps({"exit": pid, "code": code}).encode())
        if not select.select([sock], [], [], 0.05)[0]:
            continue
        data, fds, _, _ = socket.recv_fds(sock, _MAX, 3)
        if not data:
            return None
        pid = os.fork()
        if pid == 0:
            sock.close()
            return json.loads(data), fds
        for fd in fds:
            os.close(fd)
        sock.send(json.dumps({"pid": pid}).encode())


def _become(request: dict, fds: list[int]) -> None:
    """In the forked child: take on the process a fresh ``python -m fishopt.cli`` would be."""
    _die_with_parent()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    sys.path[0] = os.getcwd()  # as ``python -m`` has it, not this file's folder
    os.environ.clear()
    os.environ.update(request["env"])
    sys.argv = ["-m", *request["args"]]  # runpy puts the module's path first, as -m does


def main() -> None:
    import importlib
    import runpy

    for name in WARM:
        importlib.import_module(name)
    ours = [m for m in sys.modules if m == "fishopt" or m.startswith("fishopt.")]
    assert not ours, f"the server must not import fishopt (each child imports it): {ours}"
    sock = socket.socket(fileno=int(sys.argv[1]))
    got = _serve(sock)
    if got is None:
        return
    request, fds = got
    _become(request, fds)
    runpy.run_module(request["module"], run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
