"""Settings resolved once at the edge: storage URL, data path, cache folder, device.

This is the only module that reads fishopt's environment variables, and the only one that knows
the default storage URL. Resolution is always: explicit flag, then environment variable, then
default.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

ENV_STORAGE = "FISHOPT_STORAGE"
ENV_DATA = "FISHOPT_DATA"
ENV_CACHE = "FISHOPT_CACHE"
ENV_ARTIFACTS = "FISHOPT_ARTIFACTS"
DEFAULT_STORAGE = "sqlite:///fishopt.db"


@dataclass(frozen=True)
class Settings:
    """Where studies live and where derived files go."""

    storage: str
    cache_dir: Path
    artifacts_dir: Path
    data: str | None  # flag or FISHOPT_DATA; None means "decide from defaults"


def resolve_storage(flag: str | None = None, env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return flag or env.get(ENV_STORAGE) or DEFAULT_STORAGE


def default_artifacts_dir(storage: str) -> Path:
    """Artifacts sit beside a SQLite file, else in ./fishopt-artifacts."""
    if storage.startswith("sqlite:///"):
        path = storage.removeprefix("sqlite:///")
        if path and path != ":memory:":
            db = Path(path)
            return db.parent / f"{db.stem}-artifacts"
    return Path("fishopt-artifacts")


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


_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]*)(?P<at>@)")


def mask_url(text: str) -> str:
    """Replace any password in URLs inside ``text`` with ***; used on every message we show."""
    return _PASSWORD.sub(lambda m: f"{m['head']}***{m['at']}", text)
