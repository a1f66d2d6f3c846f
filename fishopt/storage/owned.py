"""The trials this process runs, as it wrote them: reads of them need no query.

Optuna reads the running trial back from the database several times per trial (when it is
created, before it is told, after) and every sampler or pruner call re-reads every unfinished
trial, this process's own included. With trials of a fraction of a second those reads, not the
training, fill the machine (bench figure 5). Only this process writes its running trial, so
its own copy, updated on every write that succeeds, is what the database holds. The one
exception, another worker failing the trial as stale, is a state change: a read of the study's
trials asks the database for the state of a kept trial, and every write checks it there; either
drops the copy when the trial is no longer RUNNING.

A finished trial is kept a little longer, with the times the database recorded, so the reads
that follow its end (Optuna's callbacks, the next trial's cache refresh) cost nothing either.
"""

from __future__ import annotations

import copy
import json
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from fishopt.storage import fence

KEEP_FINISHED = 8  # finished copies kept; each is read at most a few times after its end


def _stored(value: Any) -> Any:
    """What a JSON attribute reads back as (tuples become lists, keys strings)."""
    return json.loads(json.dumps(value))


class Owned:
    """Copies of this process's trials: RUNNING ones, and the last few it finished."""

    def __init__(self) -> None:
        self._running: dict[int, FrozenTrial] = {}
        self._finished: OrderedDict[int, FrozenTrial] = OrderedDict()
        self._claimed: set[int] = set()  # popped from the queue: kept once first read

    # --------------------------------------------------------------------------- membership

    def running_ids(self) -> set[int]:
        return set(self._running)

    def finished_ids(self) -> set[int]:
        return set(self._finished)

    def get(self, trial_id: int) -> FrozenTrial | None:
        """A copy the caller may change, or None when this process keeps none."""
        trial = self._running.get(trial_id) or self._finished.get(trial_id)
        return copy.deepcopy(trial) if trial is not None else None

    def started(self, trial: FrozenTrial) -> None:
        """A trial this process created RUNNING (or popped and then read back)."""
        if trial.state == TrialState.RUNNING:
            self._running[fence.trial_id(trial)] = copy.deepcopy(trial)
        self._claimed.discard(fence.trial_id(trial))

    def claim(self, trial_id: int) -> None:
        """This process set a WAITING trial RUNNING; keep it from its next read on."""
        self._claimed.add(trial_id)

    def read(self, trial: FrozenTrial) -> None:
        """A trial read from the database: keep it if claimed, drop a copy it contradicts."""
        tid = fence.trial_id(trial)
        if tid in self._claimed and trial.state == TrialState.RUNNING:
            self.started(trial)
        elif tid in self._running and trial.state != TrialState.RUNNING:
            del self._running[tid]  # failed by another worker as stale

    def drop(self, trial_id: int) -> None:
        self._running.pop(trial_id, None)
        self._finished.pop(trial_id, None)
        self._claimed.discard(trial_id)

    def served(self, trial_ids: Iterable[int]) -> None:
        """Finished copies handed to Optuna's trial cache, which never asks for them again."""
        for tid in trial_ids:
            self._finished.pop(tid, None)

    # ------------------------------------------------------------------------------- writes

    def param(self, trial_id: int, name: str, internal: float, dist: BaseDistribution) -> None:
        trial = self._running.get(trial_id)
        if trial is not None:
            fence.set_param(trial, name, dist.to_external_repr(internal), dist)

    def intermediate(self, trial_id: int, step: int, value: float) -> None:
        trial = self._running.get(trial_id)
        if trial is not None:
            trial.intermediate_values[step] = value

    def user_attrs(self, trial_id: int, attrs: Mapping[str, Any]) -> None:
        trial = self._running.get(trial_id)
        if trial is not None:
            fence.update_user_attrs(trial, {k: _stored(v) for k, v in attrs.items()})

    def system_attr(self, trial_id: int, key: str, value: Any) -> None:
        trial = self._running.get(trial_id)
        if trial is not None:
            fence.set_system_attr(trial, key, _stored(value))

    def finish(
        self,
        trial_id: int,
        state: TrialState,
        values: list[float] | None,
        start: datetime | None,
        complete: datetime | None,
    ) -> None:
        """The trial's end as stored (``start``/``complete`` read back from the database)."""
        trial = self._running.pop(trial_id, None)
        if trial is None:
            return
        trial.state = state
        if values is not None:
            trial.values = values
        trial.datetime_start = start
        trial.datetime_complete = complete
        self._finished[trial_id] = trial
        while len(self._finished) > KEEP_FINISHED:
            self._finished.popitem(last=False)
