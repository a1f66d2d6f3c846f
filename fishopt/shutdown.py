"""How a fishopt process ends: its storages closed, then no garbage collection over its heap.

Interpreter shutdown runs a garbage collection over every object still alive; once torch and
its compiler front-end are imported that takes about 0.55 s of CPU (0.73 s from a script's
last line to its process's end, 0.16 s with the collector frozen: ``python -m bench.exit_cost``,
``bench/NOTES.md``), to free memory
the operating system takes back anyway. Every fishopt process pays it: each worker, each
``--jobs`` child, each command. Frozen, the collector skips that pass; what it would have
finalized is only what a reference cycle alone keeps alive, and of that only the storages
matter (an open SQLite connection keeps its write-ahead log beside the file), so they are
closed first, explicitly.
"""

from __future__ import annotations

import atexit
import gc

from fishopt.storage import connect


def _at_exit() -> None:
    connect.close_all()
    gc.freeze()


def install() -> None:
    """At the start of a fishopt process (the CLI, a ``--jobs`` child). The handler runs at
    exit after those registered later (atexit runs last in, first out), so whatever they
    close is closed first; registering again replaces it."""
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)
