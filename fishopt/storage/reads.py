"""Reads of a study that fishopt's storage answers in one query, with a plain Optuna fallback.

The budget check runs before every claim and the trial loop asks for the best value after every
trial; reading every trial with its parameters and attributes for that cost more than the trials
themselves on cheap studies. Any other storage (Optuna's in-memory one in the benchmarks) is
read through the public API.
"""

from __future__ import annotations

import optuna
import sqlalchemy
from optuna.storages import RDBStorage
from optuna.trial import TrialState

from fishopt.storage import fence
from fishopt.storage.fence import models


def state_counts(study: optuna.Study) -> dict[TrialState, int]:
    """How many of the study's trials are in each state."""
    counts = getattr(fence.backend_of(study), "state_counts", None)
    if counts is not None:
        return counts(fence.study_id(study))
    out: dict[TrialState, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state] = out.get(t.state, 0) + 1
    return out


def best_value(study: optuna.Study) -> float | None:
    """The highest value among the study's COMPLETE trials (a maximised study)."""
    query = getattr(fence.backend_of(study), "best_complete_value", None)
    if query is not None:
        return query(fence.study_id(study))
    values = [
        float(t.value)
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    return max(values) if values else None


def trial_numbers(storage: RDBStorage, study: optuna.Study) -> list[int]:
    """Every row's number, straight from the table: Optuna's API would hide a duplicate."""
    with storage.engine.connect() as conn:
        rows = conn.execute(
            sqlalchemy.select(models.TrialModel.number).where(
                models.TrialModel.study_id == fence.study_id(study)
            )
        ).all()
    return [int(n) for (n,) in rows if n is not None]
