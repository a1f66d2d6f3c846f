"""The test-only hold (FISHOPT_TEST_HOLD): a trial waits at one epoch until a file appears."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from fishopt import config
from fishopt.errors import FishoptError
from fishopt.search import hold


def test_parse_reads_epoch_and_path_and_refuses_anything_else(tmp_path: Path) -> None:
    assert hold.parse(None) is None and hold.parse("") is None
    assert hold.parse(f"2:{tmp_path}/go") == hold.Hold(2, tmp_path / "go")
    for bad in ("2", "x:/tmp/go", "0:/tmp/go", "2:"):
        with pytest.raises(FishoptError, match="EPOCH:PATH"):
            hold.parse(bad)
    assert config.resolve_hold(env={config.ENV_TEST_HOLD: "3:/a"}) == "3:/a"
    assert config.resolve_hold(env={}) is None


def test_a_trial_waits_at_its_epoch_until_released_then_never_again(tmp_path: Path) -> None:
    h = hold.Hold(2, tmp_path / "go")
    h.at(1, trial_number=7)  # another epoch: no wait, no marker
    assert not h.marker.exists()
    events: list[str] = []

    def release_once_held() -> None:
        while not h.marker.exists():
            threading.Event().wait(0.01)
        events.append(f"held trial {h.marker.read_text().strip()}")
        h.release.touch()

    helper = threading.Thread(target=release_once_held)
    helper.start()
    h.at(2, trial_number=7)
    events.append("went on")
    helper.join()
    assert events == ["held trial 7", "went on"]
    h.marker.unlink()
    h.at(2, trial_number=8)  # released: the next trial passes straight through
    assert not h.marker.exists()
