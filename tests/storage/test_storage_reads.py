"""Reads that skip the database must still show what the database holds.

A worker reads its own running trial from memory (``storage.owned``) and re-reads another
worker's unfinished trial only when it changed (``Storage._get_trials``). Two storage objects on
one SQLite file stand in for two workers; every read is checked against a fresh, plain Optuna
storage that has no cache at all.
"""

from __future__ import annotations

import uuid
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.trial import FrozenTrial, TrialState

from fishopt.storage.connect import open_storage
from fishopt.storage.fence import backend_of


def _plain(url: str, name: str) -> list[FrozenTrial]:
    """What the database holds, read by a storage with no cache of any kind."""
    return optuna.storages.RDBStorage(url).get_all_trials(
        optuna.storages.RDBStorage(url).get_study_id_from_name(name)
    )


def _same(seen: list[FrozenTrial], truth: list[FrozenTrial]) -> None:
    def facts(t: FrozenTrial) -> tuple:
        return (
            t.number,
            t.state,
            t.values,
            t.params,
            t.intermediate_values,
            t.user_attrs,
            t.system_attrs,
            t.datetime_start,
            t.datetime_complete,
        )

    assert [facts(t) for t in seen] == [facts(t) for t in truth]


@pytest.fixture(params=["sqlite", "postgresql"])
def two_workers(request: pytest.FixtureRequest, tmp_path: Path):
    """Two workers' studies on one database (SQLite file, or the test PostgreSQL)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'reads.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    name = f"reads-{uuid.uuid4().hex[:8]}"
    a = optuna.create_study(study_name=name, storage=open_storage(url), direction="maximize")
    b = optuna.load_study(study_name=name, storage=open_storage(url))
    yield url, name, a, b
    optuna.delete_study(study_name=name, storage=url)


def test_each_worker_sees_the_other_workers_trial_as_it_changes(two_workers) -> None:
    url, name, a, b = two_workers
    mine = a.ask()
    _same(b.get_trials(), _plain(url, name))  # the new trial, seen from the other worker
    mine.suggest_float("lr", 1e-4, 1e-1, log=True)
    _same(b.get_trials(), _plain(url, name))  # its parameter
    mine.report(0.25, 1)
    mine.set_user_attr("seed", 7)
    _same(b.get_trials(), _plain(url, name))  # its epoch and attribute
    _same(a.get_trials(), _plain(url, name))  # and its own worker's copy agrees
    mine.report(0.75, 2)  # only the table that grew is read again: each part in turn
    _same(b.get_trials(), _plain(url, name))
    mine.suggest_int("units", 8, 64)
    a._storage.set_trial_system_attr(mine._trial_id, "note", [1, "two"])
    _same(b.get_trials(), _plain(url, name))
    mine.set_user_attr("seed", 8)  # written again (no row added): read with the next row
    mine.set_user_attr("repeat", 1)
    _same(b.get_trials(), _plain(url, name))
    theirs = b.ask()
    theirs.suggest_float("lr", 1e-4, 1e-1, log=True)
    a.tell(mine, 0.5)
    b.tell(theirs, state=TrialState.PRUNED)
    _same(a.get_trials(), _plain(url, name))
    _same(b.get_trials(), _plain(url, name))
    assert [t.state for t in a.get_trials()] == [TrialState.COMPLETE, TrialState.PRUNED]
    frozen = a._storage.get_trial(mine._trial_id)
    assert frozen.datetime_complete is not None and frozen.value == 0.5


def test_a_trial_failed_by_another_worker_is_not_read_from_memory(two_workers) -> None:
    url, name, a, b = two_workers
    mine = a.ask()
    mine.report(0.1, 1)
    a.get_trials()  # the worker's own copy is RUNNING
    b._storage.set_trial_state_values(mine._trial_id, TrialState.FAIL)  # found stale elsewhere
    _same(a.get_trials(), _plain(url, name))
    assert a.get_trials()[0].state == TrialState.FAIL
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        a._storage.set_trial_intermediate_value(mine._trial_id, 2, 0.2)
    assert a._storage.get_trial(mine._trial_id).state == TrialState.FAIL


def test_a_write_refused_as_finished_drops_the_memory_copy(two_workers) -> None:
    _url, _name, a, b = two_workers
    mine = a.ask()
    mine.suggest_float("lr", 1e-4, 1e-1, log=True)
    b._storage.set_trial_state_values(mine._trial_id, TrialState.FAIL)  # found stale elsewhere
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        backend_of(a).set_trial_user_attrs(mine._trial_id, {"seed": 1})
    assert a._storage.get_trial(mine._trial_id).state == TrialState.FAIL  # not RUNNING
