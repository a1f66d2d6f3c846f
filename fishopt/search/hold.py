"""A test-only hook: hold a trial at an epoch boundary until a file appears.

Tests of what happens "while a trial is training" (a signal, a lost database, a killed worker)
must not depend on how fast the CPU trains: on a fast machine a tiny trial is over before the
test acts. With ``FISHOPT_TEST_HOLD=EPOCH:PATH`` (``config.resolve_hold``), every trial of the
process waits at the end of epoch ``EPOCH``, before that epoch is reported, until ``PATH``
exists. When it starts waiting it writes ``PATH.held`` (the trial number), so the test knows
the trial is there; what the test does meanwhile is acted on at that same epoch boundary once
``PATH`` appears. Once ``PATH`` exists no trial waits again. Unset, nothing waits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from fishopt.errors import FishoptError
from fishopt.files import write_bytes

POLL = 0.02  # seconds between looks for the release file


@dataclass(frozen=True)
class Hold:
    epoch: int  # 1-based, as ``EpochRecord.epoch``
    release: Path

    @property
    def marker(self) -> Path:
        return self.release.with_name(self.release.name + ".held")

    def at(self, epoch: int, trial_number: int) -> None:
        """Wait here if this is the held epoch and the release file is not there yet."""
        if epoch != self.epoch or self.release.exists():
            return
        write_bytes(self.marker, f"{trial_number}\n".encode())  # whole, or not yet there
        while not self.release.exists():
            time.sleep(POLL)  # a signal handler still runs in between


def parse(text: str | None) -> Hold | None:
    """``EPOCH:PATH`` -> a Hold; None or empty -> None."""
    if not text:
        return None
    epoch, sep, path = text.partition(":")
    if not sep or not epoch.isdigit() or int(epoch) < 1 or not path:
        raise FishoptError(f"FISHOPT_TEST_HOLD={text!r}: expected EPOCH:PATH, e.g. 2:/tmp/go")
    return Hold(int(epoch), Path(path))
