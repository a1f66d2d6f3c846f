"""A throwaway PostgreSQL server, and PgBouncer in front of it, for the chaos run and its tests.

Both live in a fresh temporary folder, listen on 127.0.0.1 on free ports and are removed when
the ``with`` block ends, so a test or a bench never depends on (or disturbs) a server someone
else runs. They use Debian's binaries (``postgresql-15``, ``pgbouncer``); ``.ci/run`` installs
them. Neither server runs as root, so as root they run as the ``postgres`` user.

The server takes password logins over TCP (scram-sha-256), like a real deployment: the URL
carries the password, and PgBouncer logs in to PostgreSQL with the same one.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

USER = "fishopt"
ADMIN_APP = "fishopt-pgserver-admin"  # the application_name of ``sql``'s own connections
DATABASE = "fishopt"
PASSWORD = "chaos-pw-not-secret"  # a throwaway server on 127.0.0.1, gone after the run
PG_BIN = Path("/usr/lib/postgresql/15/bin")


class Missing(RuntimeError):
    """A binary the servers need is not installed; the message says which and how to get it."""


def binary(name: str) -> str:
    """The path of ``initdb``, ``pg_ctl``, ``postgres`` (PostgreSQL 15) or ``pgbouncer``."""
    home = Path("/usr/sbin") if name == "pgbouncer" else PG_BIN  # where Debian puts them
    found = str(home / name) if (home / name).exists() else shutil.which(name)
    if found is None:
        package = "pgbouncer" if name == "pgbouncer" else "postgresql-15"
        raise Missing(f"{name} not found: apt-get install {package}")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_as() -> dict:
    """Popen arguments that drop root: PostgreSQL and PgBouncer both refuse to run as root."""
    if os.geteuid() != 0:
        return {}
    entry = pwd.getpwnam("postgres")
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _own(path: Path) -> None:
    if os.geteuid() == 0:
        entry = pwd.getpwnam("postgres")
        os.chown(path, entry.pw_uid, entry.pw_gid)


def url(port: int, database: str = DATABASE) -> str:
    return f"postgresql+psycopg://{USER}:{PASSWORD}@127.0.0.1:{port}/{database}"


@dataclass
class Postgres:
    """One PostgreSQL server in ``folder``; ``restart`` is the fault the chaos run injects."""

    folder: Path
    port: int
    max_connections: int
    restarts: int = 0

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def url(self) -> str:
        return url(self.port)

    def _ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            [binary("pg_ctl"), "-D", str(self.data), "-w", "-t", "60", *args],
            capture_output=True,
            text=True,
            check=check,
            **_run_as(),
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-c unix_socket_directories={self.folder} "
            f"-c max_connections={self.max_connections} -c fsync=off "
            "-c shared_buffers=16MB -c log_min_messages=warning"
        )
        self._ctl("-l", str(self.folder / "postgres.log"), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "stop", check=False)

    def restart(self) -> float:
        """Stop (``-m fast``: every connection is cut) and start again; seconds it took."""
        began = time.monotonic()
        self.stop()
        self.start()
        self.restarts += 1
        return time.monotonic() - began

    def sql(self, query: str, database: str = DATABASE) -> list[tuple]:
        """Run one statement as the superuser, straight to the server (not through a pooler)."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=USER,
            password=PASSWORD,
            dbname=database,
            autocommit=True,
            connect_timeout=5,
            application_name=ADMIN_APP,
        ) as conn:
            cur = conn.execute(query)
            return cur.fetchall() if cur.description else []

    def connections(self) -> int:
        """Client backends connected now (every database), as pg_stat_activity counts them, less
        ``sql``'s own: this query's, and an earlier query's backend that is still exiting (its
        client has gone, and the server lists it a moment longer)."""
        rows = self.sql(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
            f" AND application_name IS DISTINCT FROM '{ADMIN_APP}'"
        )
        return int(rows[0][0])


@contextlib.contextmanager
def postgres(max_connections: int = 100) -> Iterator[Postgres]:
    """A fresh PostgreSQL 15 server with a ``fishopt`` database; removed afterwards."""
    initdb = binary("initdb")
    binary("pg_ctl")
    folder = Path(tempfile.mkdtemp(prefix="fishopt-pg-"))
    server: Postgres | None = None
    try:
        _own(folder)
        pwfile = folder / "pw"
        pwfile.write_text(PASSWORD + "\n")
        _own(pwfile)
        subprocess.run(
            [initdb, "-D", str(folder / "data"), "-U", USER, f"--pwfile={pwfile}",
             "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8",
             "--no-sync", "--locale=C"],
            capture_output=True, text=True, check=True, **_run_as(),
        )  # fmt: skip
        pwfile.unlink()
        # free_port() binds and releases: another process may take the port before the
        # server binds it, so a failed start tries another port.
        for attempt in range(3):
            server = Postgres(folder, free_port(), max_connections)
            try:
                server.start()
                break
            except subprocess.CalledProcessError:
                server = None
                if attempt == 2:
                    raise
        server.sql(f"CREATE DATABASE {DATABASE}", database="postgres")
        yield server
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"{exc.cmd[0]} failed: {(exc.stderr or exc.stdout).strip()}") from None
    finally:
        if server is not None:
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class Bouncer:
    """PgBouncer in transaction pooling in front of one server."""

    folder: Path
    port: int
    server: Postgres
    pool_size: int
    proc: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return url(self.port)

    def show(self, what: str) -> list[dict]:
        """``SHOW POOLS`` and friends from PgBouncer's admin console, as dicts."""
        import psycopg

        with psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user=USER,
            password=PASSWORD,
            dbname="pgbouncer",
            autocommit=True,
            connect_timeout=5,
            cursor_factory=psycopg.ClientCursor,  # the console speaks the simple protocol only
        ) as conn:
            cur = conn.execute(f"SHOW {what}")
            names = [c.name for c in cur.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def clients(self) -> int:
        """Client connections to the fishopt database now (not the admin console)."""
        return sum(
            int(p["cl_active"]) + int(p["cl_waiting"])
            for p in self.show("POOLS")
            if p["database"] == DATABASE
        )

    def start(self) -> None:
        """Start PgBouncer (again, on the same port) and wait until it accepts connections."""
        self.proc = subprocess.Popen(
            [binary("pgbouncer"), str(self.folder / "pgbouncer.ini")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **_run_as(),
        )
        deadline = time.monotonic() + 30
        # Listening, and still running: not another process's socket on a port it failed to bind.
        while not (_listening(self.port) and self.proc.poll() is None):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgbouncer did not start:\n{self.log()[-2000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: the pooler dies with every client connection open (the fault to test)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # SIGINT: shut down now
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""


def bouncer_config(port: int, server_port: int, folder: Path, pool_size: int) -> str:
    """pgbouncer.ini: transaction pooling, at most ``pool_size`` server connections in all."""
    return f"""[databases]
* = host=127.0.0.1 port={server_port}

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = {port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {folder / "userlist.txt"}
admin_users = {USER}
pool_mode = transaction
max_client_conn = 2000
default_pool_size = {pool_size}
max_db_connections = {pool_size}
reserve_pool_size = 0
server_reset_query =
logfile = {folder / "pgbouncer.log"}
pidfile = {folder / "pgbouncer.pid"}
log_connections = 0
log_disconnections = 0
; after a failed login to the server (a restart), try again in 1 s, not PgBouncer's 15 s
server_login_retry = 1
"""


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def pgbouncer(server: Postgres, pool_size: int = 10) -> Iterator[Bouncer]:
    """PgBouncer (transaction pooling) in front of ``server``; stopped and removed afterwards."""
    binary("pgbouncer")
    folder = Path(tempfile.mkdtemp(prefix="fishopt-pgbouncer-"))
    bouncer = Bouncer(folder, free_port(), server, pool_size)
    try:
        _own(folder)
        (folder / "userlist.txt").write_text(f'"{USER}" "{PASSWORD}"\n')
        for attempt in range(3):  # a port taken between free_port() and the bind: another
            (folder / "pgbouncer.ini").write_text(
                bouncer_config(bouncer.port, server.port, folder, pool_size)
            )
            for name in ("userlist.txt", "pgbouncer.ini"):
                _own(folder / name)
            try:
                bouncer.start()
                break
            except RuntimeError:
                if attempt == 2:
                    raise
                bouncer.port = free_port()
        yield bouncer
    finally:
        bouncer.stop()
        shutil.rmtree(folder, ignore_errors=True)
