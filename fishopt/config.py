"""Settings resolved once at the edge: storage URL, data path, cache folder, device, and the
dashboard's login.

This is the only module that reads fishopt's environment variables, and the only one that knows
the default storage URL. Resolution is always: explicit flag, then environment variable, then
default.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

ENV_STORAGE = "FISHOPT_STORAGE"
ENV_DATA = "FISHOPT_DATA"
ENV_CACHE = "FISHOPT_CACHE"
ENV_ARTIFACTS = "FISHOPT_ARTIFACTS"
DEFAULT_STORAGE = "sqlite:///fishopt.db"


@dataclass(frozen=True)
class StorageURL:
    """A storage URL parsed once, at the edge: everything below reads these fields and never
    the string again. ``text`` holds the password, if any; show ``masked`` (also ``str()``)."""

    text: str = field(repr=False)
    backend: str  # 'sqlite', 'postgresql', 'mysql', ...
    sqlite_path: Path | None  # the database file of a sqlite:/// URL; None elsewhere or in memory
    masked: str
    network_fs: str | None  # the network filesystem holding the SQLite file, if it is on one

    def __str__(self) -> str:
        return self.masked

    @property
    def local_sqlite(self) -> bool:
        """A SQLite file in an existing local folder: WAL needs local shared memory."""
        p = self.sqlite_path
        return p is not None and p.parent.is_dir() and self.network_fs is None

    @property
    def exact_lock(self) -> bool:
        """Whether this backend has a cross-process lock, so the budget is never overshot."""
        return self.backend == "postgresql" or self.sqlite_path is not None


def parse_storage(text: str, mounts: str | None = None) -> StorageURL:
    """``text`` as a ``StorageURL``; a URL SQLAlchemy cannot read is refused in one line.
    ``mounts`` stands in for /proc/mounts (tests)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise _config_error(
            f"storage {mask_url(text)!r} is not a database URL (e.g. sqlite:///fishopt.db or "
            "postgresql+psycopg://USER@HOST/DB)"
        ) from None
    backend = url.get_backend_name().lower()
    path = None
    if backend == "sqlite" and url.database and url.database != ":memory:":
        path = Path(url.database)
    return StorageURL(
        text=text,
        backend=backend,
        sqlite_path=path,
        masked=mask_url(text),
        network_fs=network_filesystem(path, mounts) if path is not None else None,
    )


@dataclass(frozen=True)
class Settings:
    """Where studies live and where derived files go."""

    storage: StorageURL
    cache_dir: Path
    artifacts_dir: Path
    data: str | None  # flag or FISHOPT_DATA; None means "decide from defaults"


def resolve_storage(flag: str | None = None, env: dict[str, str] | None = None) -> StorageURL:
    """The storage URL from the flag, then ``FISHOPT_STORAGE``, then the default, parsed."""
    env = os.environ if env is None else env
    return parse_storage(flag or env.get(ENV_STORAGE) or DEFAULT_STORAGE)


def default_artifacts_dir(storage: StorageURL) -> Path:
    """Artifacts sit beside a SQLite file, else in ./fishopt-artifacts."""
    db = storage.sqlite_path
    return db.parent / f"{db.stem}-artifacts" if db is not None else Path("fishopt-artifacts")


# Filesystems where SQLite's locking is unreliable (and WAL is unsupported).
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "afs",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "beegfs",
        "davfs",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.gcsfuse",
        "fuse.rclone",
        "fuse.glusterfs",
        "fuse.cephfs",
    }
)


def network_filesystem(path: Path, mounts: str | None = None) -> str | None:
    """The filesystem type holding ``path`` if it is a network one (from /proc/mounts)."""
    if mounts is None:
        try:
            mounts = Path("/proc/mounts").read_text()
        except OSError:
            return None  # not Linux: no cheap way to tell
    target = path.expanduser().absolute()
    best, best_type = "", ""
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1].replace("\\040", " ")
        if (target.as_posix() + "/").startswith(point.rstrip("/") + "/") and len(point) > len(best):
            best, best_type = point, parts[2]
    return best_type if best_type in NETWORK_FILESYSTEMS else None


def resolve(
    storage: str | None = None,
    data: str | None = None,
    cache_dir: str | Path | None = None,
    artifacts_dir: str | Path | None = None,
    env: dict[str, str] | None = None,
) -> Settings:
    env = os.environ if env is None else env
    url = resolve_storage(storage, env)
    cache = Path(cache_dir or env.get(ENV_CACHE) or Path.home() / ".cache" / "fishopt")
    artifacts = Path(artifacts_dir or env.get(ENV_ARTIFACTS) or default_artifacts_dir(url))
    return Settings(
        storage=url,
        cache_dir=cache,
        artifacts_dir=artifacts,
        data=data or env.get(ENV_DATA) or None,
    )


# A password in a URL, well-formed or not (``scheme://user:pw@``, ``scheme:/user:pw@``): the one
# pattern both masking and the list of secrets use.
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*:?//?[^:/@\s]*:)(?P<pw>[^@\s]*)@")


def mask_url(text: str) -> str:
    """Replace any password in URLs inside ``text`` with ***; used on every message we show."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}***@", text)


# ------------------------------------------------------------------ heartbeats (many workers)

ENV_HEARTBEAT_INTERVAL = "FISHOPT_HEARTBEAT_INTERVAL"
ENV_GRACE_PERIOD = "FISHOPT_GRACE_PERIOD"
ENV_MAX_RETRY = "FISHOPT_MAX_RETRY"
DEFAULT_HEARTBEAT_INTERVAL = 10  # seconds between a running trial's heartbeats
DEFAULT_GRACE_PERIOD = 30  # a RUNNING trial silent this long belongs to a dead worker
DEFAULT_MAX_RETRY = 2  # how often a dead worker's trial is re-run before it stays FAIL


@dataclass(frozen=True)
class Heartbeat:
    """How workers prove they are alive, and how soon a silent one's trial is retried."""

    interval: int
    grace_period: int
    max_retry: int

    def describe(self) -> str:
        return (
            f"heartbeat every {self.interval}s, stale after {self.grace_period}s, "
            f"up to {self.max_retry} retries"
        )


def _env_int(env: dict[str, str] | os._Environ, name: str) -> int | None:
    text = env.get(name)
    if text is None or not text.strip():
        return None
    try:
        return int(text)
    except ValueError:
        raise _config_error(f"{name}={text!r}: expected a whole number of seconds") from None


def _config_error(message: str) -> Exception:
    from fishopt.errors import FishoptError

    return FishoptError(message)


def resolve_heartbeat(
    interval: int | None = None,
    grace_period: int | None = None,
    max_retry: int | None = None,
    env: dict[str, str] | None = None,
) -> Heartbeat:
    """Flag, then environment, then default; the grace period must outlast a heartbeat."""
    env = os.environ if env is None else env
    if max_retry is None:
        max_retry = _env_int(env, ENV_MAX_RETRY)
    hb = Heartbeat(
        interval=interval or _env_int(env, ENV_HEARTBEAT_INTERVAL) or DEFAULT_HEARTBEAT_INTERVAL,
        grace_period=grace_period or _env_int(env, ENV_GRACE_PERIOD) or DEFAULT_GRACE_PERIOD,
        max_retry=DEFAULT_MAX_RETRY if max_retry is None else max_retry,
    )
    if hb.interval < 1 or hb.max_retry < 0:
        raise _config_error(
            f"heartbeat interval must be >= 1 s and max retry >= 0 (got {hb.interval}, "
            f"{hb.max_retry}; {ENV_HEARTBEAT_INTERVAL}, {ENV_MAX_RETRY})"
        )
    if hb.grace_period <= hb.interval:
        # A grace period no longer than one beat would fail healthy trials between two beats.
        raise _config_error(
            f"grace period {hb.grace_period}s must be longer than the heartbeat interval "
            f"{hb.interval}s ({ENV_GRACE_PERIOD}, {ENV_HEARTBEAT_INTERVAL})"
        )
    return hb


# ------------------------------------------------------------------------------------ secrets


def secrets(
    url: StorageURL | str | None = None, env: dict[str, str] | None = None
) -> tuple[str, ...]:
    """Passwords that must never be shown: the storage URL's (even in a malformed URL),
    PGPASSWORD, which libpq reads when the URL has none, and the dashboard's password."""
    from urllib.parse import unquote

    env = os.environ if env is None else env
    if isinstance(url, StorageURL):
        url = url.text
    found: list[str] = []
    for text in (url, env.get(ENV_STORAGE)):
        if text:
            for m in _URL_PASSWORD.finditer(text):
                found += [m["pw"], unquote(m["pw"])]
    for name in ("PGPASSWORD", ENV_DASHBOARD_PASSWORD):
        if env.get(name):
            found.append(env[name])
    # Longest first, so a password containing a shorter one is replaced whole.
    return tuple(sorted({s for s in found if len(s) >= 3}, key=len, reverse=True))


def redact(text: str, known: tuple[str, ...] = ()) -> str:
    """``mask_url`` plus every known secret replaced by ***, wherever it appears."""
    text = mask_url(text)
    for secret in known:
        text = text.replace(secret, "***")
    return text


# ------------------------------------------------------------------------- dashboard login

ENV_DASHBOARD_USER = "FISHOPT_DASHBOARD_USER"
ENV_DASHBOARD_PASSWORD = "FISHOPT_DASHBOARD_PASSWORD"
ENV_DASHBOARD_PASSWORD_FILE = "FISHOPT_DASHBOARD_PASSWORD_FILE"
DEFAULT_DASHBOARD_USER = "fishopt"
MIN_DASHBOARD_PASSWORD = 12  # sent on every request and guessable at network speed


@dataclass(frozen=True)
class DashboardLogin:
    """HTTP basic credentials for ``fishopt dashboard``; ``source`` says where they came from
    (an environment variable or a file), so messages can name it without the secret."""

    user: str
    password: str = field(repr=False)
    source: str


def resolve_dashboard_login(env: dict[str, str] | None = None) -> DashboardLogin | None:
    """The dashboard's login from the environment or a password file; None when neither is set.

    There is deliberately no command-line flag: a flag's value shows in ``ps`` and in shell
    history. A password file must not be open to every user, for the same reason.
    """
    env = os.environ if env is None else env
    user = env.get(ENV_DASHBOARD_USER) or DEFAULT_DASHBOARD_USER
    password, file = env.get(ENV_DASHBOARD_PASSWORD), env.get(ENV_DASHBOARD_PASSWORD_FILE)
    if password and file:
        raise _config_error(
            f"both {ENV_DASHBOARD_PASSWORD} and {ENV_DASHBOARD_PASSWORD_FILE} are set; set one"
        )
    if file:
        path = Path(file)
        try:
            mode = path.stat().st_mode
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise _config_error(f"{ENV_DASHBOARD_PASSWORD_FILE}={file}: {why}") from None
        if mode & 0o007:
            raise _config_error(
                f"{ENV_DASHBOARD_PASSWORD_FILE}={file} is open to every user "
                f"(mode {mode & 0o777:o}); chmod o-rwx {file}"
            )
        password, source = text.strip("\r\n"), f"{ENV_DASHBOARD_PASSWORD_FILE} ({file})"
    elif password:
        source = ENV_DASHBOARD_PASSWORD
    else:
        return None
    if len(password) < MIN_DASHBOARD_PASSWORD:
        raise _config_error(
            f"the dashboard password from {source} is too short ({len(password)} characters; "
            f"at least {MIN_DASHBOARD_PASSWORD}, e.g. openssl rand -hex 16)"
        )
    if ":" in user:
        raise _config_error(f"{ENV_DASHBOARD_USER}={user!r}: a user name cannot contain ':'")
    return DashboardLogin(user=user, password=password, source=source)


# ------------------------------------------------------------------------- tests only

ENV_TEST_HOLD = "FISHOPT_TEST_HOLD"


def resolve_hold(env: dict[str, str] | None = None) -> str | None:
    """``FISHOPT_TEST_HOLD`` (``EPOCH:PATH``, parsed by ``search.hold``): tests hold a trial
    at an epoch boundary with it, so they check the order of events rather than time."""
    env = os.environ if env is None else env
    return env.get(ENV_TEST_HOLD) or None
