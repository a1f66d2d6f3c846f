"""What other code prints on fishopt's behalf: passwords masked, known noise filtered.

Messages fishopt writes itself go through ``config.redact``; this module covers what other code
prints on our behalf (Optuna's and SQLAlchemy's loggers, warnings, uncaught exceptions in the main
thread or in Optuna's heartbeat thread), for the storage URL and PGPASSWORD of this process.

It is also the one place that filters third-party warnings (``quiet_warnings``): ``install`` runs
in every fishopt process, the CLI's and each ``--jobs`` child's (a spawned interpreter inherits
no warning filters), so a filter anywhere else would miss the children.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
import warnings

from fishopt import config
from fishopt.errors import FishoptError


class RedactFilter(logging.Filter):
    """Rewrites a log record's text with every known secret masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        known = config.secrets()
        text = record.getMessage()
        clean = config.redact(text, known)
        if record.exc_info and isinstance(record.exc_info[1], FishoptError):
            record.exc_info = record.exc_text = None  # explained in its message: no traceback
        if record.exc_info:
            clean += "\n" + config.redact("".join(traceback.format_exception(*record.exc_info)))
            clean = config.redact(clean, known)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, None
        return True


class OneLine(logging.Filter):
    """A record's traceback cut to its exception's first line. For SQLAlchemy's pool, which
    logs a page when a connection it hands back was cut (a database or pooler restart): the
    pool replaces that connection, and the worker says when the storage is back."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            text = str(exc).strip().splitlines()
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {text[0] if text else ''}"
            record.args = None
            record.exc_info = record.exc_text = None
        return True


class _Stderr(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is at each record (a test may swap it)."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def _one_line_pool_errors() -> None:
    logger = logging.getLogger("sqlalchemy.pool")
    if not any(isinstance(f, OneLine) for h in logger.handlers for f in h.filters):
        handler = _Stderr()
        handler.addFilter(OneLine())
        handler.addFilter(RedactFilter())
        logger.addHandler(handler)
        logger.propagate = False  # not again through a handler that prints the traceback


def _filter_handlers() -> None:
    flt = RedactFilter()
    for name in ("", "optuna", "sqlalchemy"):
        for handler in logging.getLogger(name).handlers:
            if not any(isinstance(f, RedactFilter) for f in handler.filters):
                handler.addFilter(flt)


def format_exception(exc: BaseException) -> str:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return config.redact(text, config.secrets())


def print_exception() -> None:
    """The current exception's traceback on stderr, with passwords masked."""
    exc = sys.exc_info()[1]
    if exc is not None:
        sys.stderr.write(format_exception(exc))
        sys.stderr.flush()


def quiet_warnings() -> None:
    """Filter the third-party warnings a user can do nothing about; only these, only here.

    A warning fishopt can avoid is fixed where it is triggered instead (e.g. the TPE sampler's
    ``warn_independent_sampling``, no longer passed). What remains:

    - Optuna's ``ExperimentalWarning``: fishopt deliberately uses experimental Optuna features
      (heartbeats and their retry callback, ``fail_stale_trials``, TPE's ``group=True``, metric
      names, the matplotlib plots). The warning tells whoever writes the call that the interface
      may change; that is us, with Optuna's version bounded in pyproject.toml and tests that
      exercise every such call. It asks nothing of a user, so it is not shown to one.
    """
    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def install() -> None:
    """Mask secrets in log handlers, warnings and uncaught exceptions of every thread, and
    filter the known third-party warnings (``quiet_warnings``)."""
    import optuna  # noqa: F401  (creates Optuna's handler, which we then filter)

    quiet_warnings()
    _filter_handlers()
    _one_line_pool_errors()
    show = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):  # type: ignore[no-untyped-def]
        show(config.redact(str(message), config.secrets()), category, filename, lineno, file, line)

    warnings.showwarning = showwarning

    def excepthook(exc_type, exc, tb):  # type: ignore[no-untyped-def]
        sys.stderr.write(
            config.redact("".join(traceback.format_exception(exc_type, exc, tb)), config.secrets())
        )

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None:
            return
        name = args.thread.name if args.thread else "thread"
        sys.stderr.write(f"Exception in {name}:\n{format_exception(args.exc_value)}")

    sys.excepthook = excepthook
    threading.excepthook = thread_hook
