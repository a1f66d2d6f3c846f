"""Keeping passwords out of everything a user sees: logs, warnings and tracebacks.

Messages fishopt writes itself go through ``config.redact``; this module covers what other code
prints on our behalf (Optuna's and SQLAlchemy's loggers, warnings, uncaught exceptions in the main
thread or in Optuna's heartbeat thread), for the storage URL and PGPASSWORD of this process.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
import warnings

from fishopt import config


class RedactFilter(logging.Filter):
    """Rewrites a log record's text with every known secret masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        known = config.secrets()
        text = record.getMessage()
        clean = config.redact(text, known)
        if record.exc_info:
            clean += "\n" + config.redact("".join(traceback.format_exception(*record.exc_info)))
            clean = config.redact(clean, known)
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = clean, None
        return True


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


def install() -> None:
    """Mask secrets in log handlers, warnings and uncaught exceptions of every thread."""
    import optuna  # noqa: F401  (creates Optuna's handler, which we then filter)

    _filter_handlers()
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
