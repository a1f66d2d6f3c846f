"""`python -m bench.url_trace`: follow the storage URL through one `fishopt study` run.

Issue 18 asked that the URL be parsed once at the edge and passed down as a value. This counts,
with ``sys.setprofile`` over a real in-process ``fishopt study depth --data digits --n-trials 1
--epochs 1`` on a temporary SQLite file:

- ``url_parses``: calls, with the raw string among their arguments, of the parser of today
  (``config.parse_storage``) or of the helpers that read the string before the move
  (``config.backend``, ``sqlite_path``, ``local_sqlite``...); reading a field of the parsed
  value is not a parse, and masking passwords in messages (``mask_url``) is not counted;
- ``proc_mounts_reads``: reads of /proc/mounts (the network-filesystem check);
- ``rooms`` / ``visits`` / ``returns`` / ``climbs``: the fishopt modules whose frames hold the URL
  (as a string or a ``StorageURL``), in call order; a return is a visit to a module already
  left, a climb a step from a lower package back up to a higher one (``LAYERS``, README's
  "Layout": config below storage below search).

It runs on any commit that has ``fishopt.cli.app``, so the same command gives the figures before
the move (``git worktree add /tmp/before 83109de``) and after. One line per figure, ``key=value``.
"""

from __future__ import annotations

import builtins
import collections
import itertools
import sys
import tempfile
from pathlib import Path

PARSERS = {
    (module, name)
    for module in ("fishopt.config", "fishopt.search.sqlite", "fishopt.storage.sqlite")
    for name in (
        "backend",
        "sqlite_path",
        "parse_storage",
        "local_sqlite",
        "network_filesystem",
        "prepare_sqlite",
        "sqlite_warnings",
    )
}


LAYERS = ("config", "storage", "data", "search", "cli")  # lowest first


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else len(LAYERS)


def _raw_url(value: object) -> bool:
    return isinstance(value, str) and "://" in value


def _holds_url(value: object) -> bool:
    return (isinstance(value, str) and value.startswith("sqlite:")) or (
        type(value).__name__ == "StorageURL"
    )


def main() -> None:
    calls: collections.Counter[tuple[str, str]] = collections.Counter()
    visits: list[str] = []
    mounts = [0]

    def profile(frame, event, _arg):
        if event != "call":
            return
        module = frame.f_globals.get("__name__", "")
        arguments = list(frame.f_locals.values())  # at a call: the arguments only
        if (module, frame.f_code.co_name) in PARSERS and any(map(_raw_url, arguments)):
            calls[module, frame.f_code.co_name] += 1
        held = module.startswith("fishopt") and any(map(_holds_url, arguments))
        if held and (not visits or visits[-1] != module):
            visits.append(module)

    real_open, real_read_text = builtins.open, Path.read_text

    def counting_open(file, *args, **kwargs):
        mounts[0] += str(file) == "/proc/mounts"
        return real_open(file, *args, **kwargs)

    def counting_read_text(self, *args, **kwargs):
        mounts[0] += str(self) == "/proc/mounts"
        return real_read_text(self, *args, **kwargs)

    builtins.open, Path.read_text = counting_open, counting_read_text
    tmp = tempfile.mkdtemp(prefix="fishopt-url-trace-")
    argv = ["study", "depth", "--data", "digits", "--n-trials", "1", "--epochs", "1"]
    argv += ["--storage", f"sqlite:///{tmp}/trace.db", "--cache-dir", tmp]
    from fishopt.cli import app

    sys.setprofile(profile)
    try:
        app(argv, standalone_mode=False)
    except SystemExit:
        pass
    finally:
        sys.setprofile(None)
        builtins.open, Path.read_text = real_open, real_read_text
    rooms = list(dict.fromkeys(visits))
    print(f"url_parses={sum(calls.values())} proc_mounts_reads={mounts[0]}")
    print(
        "parsers "
        + " ".join(f"{m.removeprefix('fishopt.')}.{n}={c}" for (m, n), c in calls.items())
    )
    climbs = sum(_layer(b) > _layer(a) for a, b in itertools.pairwise(visits))
    returns = len(visits) - len(rooms)
    print(f"rooms={len(rooms)} visits={len(visits)} returns={returns} climbs={climbs}")
    print("path " + " > ".join(v.removeprefix("fishopt.") for v in visits))


if __name__ == "__main__":
    main()
