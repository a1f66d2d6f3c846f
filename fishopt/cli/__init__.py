"""The ``fishopt`` command line: Typer commands that parse, call one library function, display.

One module per command group (``study``, ``data``, ``bundle``, ``views``); options that several
commands take are declared once in ``common``.
"""

from __future__ import annotations

import sys

from rich.markup import escape

from fishopt import config
from fishopt.cli.common import app, err
from fishopt.errors import FishoptError

# The command modules register their commands on import, in the order --help lists them.
# isort: off
from fishopt.cli import study, data, bundle, views, replay  # noqa: F401

# isort: on

__all__ = ["app", "main"]


def main() -> None:
    """The ``fishopt`` entry point: user mistakes as one line, bugs as a masked traceback."""
    from fishopt import redact, shutdown

    # Masks passwords in what other code prints and filters the third-party warnings a user
    # can do nothing about; the one place for warning filters (``redact.quiet_warnings``), also
    # run by every `--jobs` child.
    redact.install()
    shutdown.install()  # the storages closed at exit, and no collection over torch's heap
    try:
        app()
    except FishoptError as exc:
        message = escape(config.redact(str(exc), config.secrets()))
        err.print(f"[red]error:[/red] {message}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception:  # a bug: keep the traceback, but never with a password in it
        redact.print_exception()
        sys.exit(1)
