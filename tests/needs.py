"""What a group of tests needs from the machine, and the one place that reads ``CI``.

Outside CI a test whose group's need is missing (no PostgreSQL, no Chromium, ...) is skipped,
and the run ends with one line naming the skipped groups and how to run them
(``conftest.pytest_terminal_summary``). In CI (``CI=true``, set by ``.ci/run``) the same test
fails with the reason: a suite that silently skips what it is meant to check proves nothing.
"""

from __future__ import annotations

import os
import re
import shutil
from typing import NoReturn

import pytest

IN_CI = os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")

# group -> how to get it; CI must have every group but "gpu" (.ci/run installs them).
HOW = {
    "postgresql": "set FISHOPT_TEST_PG to a PostgreSQL URL",
    "pg_ctlcluster": "install postgresql-15 (pg_ctlcluster)",
    "root": "run as root (the tests stop and start PostgreSQL)",
    "chromium": "install chromium",
    "curl": "install curl",
    "pgbouncer": "install pgbouncer",
    "pyspng": "pip install pyspng",
    "tmpfs": "run as root where `mount -t tmpfs` is allowed",
    "gpu": "run where torch sees a GPU",
}
NOT_IN_CI = {"gpu"}  # CI machines have none; skipped there too
_REASON = re.compile(r"needs (\w+): ")


def require(group: str, why: str) -> NoReturn:
    """Skip (outside CI) or fail (in CI) a test whose ``group`` is missing here."""
    if group not in HOW:
        raise ValueError(f"unknown test group {group!r}; known: {', '.join(HOW)}")
    if IN_CI and group not in NOT_IN_CI:
        pytest.fail(f"CI=true, but {why}; .ci/run must provide {group}", pytrace=False)
    pytest.skip(f"needs {group}: {why}")


def group_of(reason: str) -> str | None:
    """The group a skip reason written by ``require`` names, else None."""
    m = _REASON.search(reason)
    return m.group(1) if m and m.group(1) in HOW else None


def executable(group: str, *names: str) -> str:
    """The path of the first of ``names`` on PATH, else ``require(group)``."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    require(group, f"{' or '.join(names)} is not installed")


def skipped_line(counts: dict[str, int]) -> str:
    """One line: which groups were skipped, and how to run them."""
    groups = ", ".join(f"{g} ({n} test{'s' if n != 1 else ''})" for g, n in sorted(counts.items()))
    how = "; ".join(HOW[g] for g in sorted(counts))
    return f"skipped groups: {groups}. To run them: {how} (.ci/run sets up all but gpu)."
