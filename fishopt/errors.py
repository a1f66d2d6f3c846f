"""The one exception type for user mistakes.

Anything raised as ``FishoptError`` is shown by the CLI as a single line and a non-zero exit;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class FishoptError(Exception):
    """A problem with the user's input or environment, explained in one line."""

    exit_code = 2
