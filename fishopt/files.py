"""Writes that users depend on: a file or a folder appears whole or not at all.

Everything is built under a temporary name beside its final place (same filesystem, so the
rename is atomic) and renamed into place only once complete; a crash or Ctrl-C midway leaves the
previous version, or nothing, never half a file that a later run would trust.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO


@contextlib.contextmanager
def atomic_file(path: Path, mode: int = 0o644) -> Iterator[BinaryIO]:
    """A binary file handle whose contents become ``path`` (with ``mode``: a temporary file
    is private to its owner) when the block ends normally."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_bytes(path: Path, blob: bytes, mode: int = 0o644) -> None:
    with atomic_file(path, mode) as f:
        f.write(blob)


@contextlib.contextmanager
def atomic_dir(final: Path, *, replace: bool = False) -> Iterator[Path]:
    """A temporary folder that becomes ``final`` when the block ends normally.

    If ``final`` appeared meanwhile (another process built the same thing), theirs is kept
    unless ``replace``; with ``replace``, the old folder is swapped out and removed only after
    the new one is in place.
    """
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-", dir=final.parent))
    try:
        yield tmp
        if replace and final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.old-", dir=final.parent))
            os.replace(final, old / final.name)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):  # lost a race to an identical copy: keep it
                os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
