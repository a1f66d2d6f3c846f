"""A message as a log file shows it: secrets masked, each line wrapped at 80 columns.

Workers' output is read in files (``nohup``, ``docker compose logs``, CI), with no terminal to
wrap it; every sink (``fishopt study``, ``fishopt worker``, each ``--jobs`` child, which puts its
tag before every line) goes through here. A continuation is indented two spaces, and words are
never broken, so a URL or a path longer than a line stays whole and can still be copied.
"""

from __future__ import annotations

import textwrap

from fishopt import config

WIDTH = 80


def log_lines(message: str, prefix: str = "", storage: str | None = None) -> list[str]:
    """``message`` (which may hold several lines) as lines of at most ``WIDTH`` columns after
    ``prefix``, with every known secret masked (``storage``: the URL of this run, if any)."""
    text = config.redact(message, config.secrets(storage))
    width = max(WIDTH - len(prefix), 40)
    out = []
    for line in text.splitlines() or [""]:
        indent = line[: len(line) - len(line.lstrip(" "))]
        wrapped = textwrap.wrap(
            line,
            width,
            subsequent_indent=indent + "  ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        out += [prefix + part for part in wrapped or [""]]
    return out
