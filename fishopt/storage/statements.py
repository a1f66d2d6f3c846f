"""The SQL a worker runs for every trial, built once.

With trials of a fraction of a second, building a statement (SQLAlchemy's expression objects,
the ``excluded`` alias of an upsert) cost more than running it; these are built at import and
run with parameters. ``storage.rdb`` is their one user.
"""

from __future__ import annotations

import functools
import sqlite3
from typing import Any

import sqlalchemy
from optuna.trial import TrialState
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from fishopt.storage.fence import models


@functools.cache
def upsert(dialect: str, table: sqlalchemy.Table, keys: tuple[str, ...], *updates: str) -> Any:
    """A prebuilt ``INSERT ... ON CONFLICT (keys) DO UPDATE`` run with parameters: building
    the statement (``excluded`` makes a table alias) cost more than running it."""
    stmt = _insert(dialect, table)
    assign = {c: stmt.excluded[c] for c in updates}
    return stmt.on_conflict_do_update(index_elements=[table.c[k] for k in keys], set_=assign)


@functools.cache
def heartbeat(dialect: str) -> Any:
    """A trial's heartbeat in one upsert, stamped with the database's clock (parameter:
    ``trial_id``; Optuna: a lookup, then an insert or a locked re-read and an update)."""
    beats = models.TrialHeartbeatModel.__table__
    return _insert(dialect, beats).on_conflict_do_update(
        index_elements=[beats.c.trial_id], set_={"heartbeat": sqlalchemy.func.now()}
    )


def _insert(dialect: str, table: sqlalchemy.Table) -> Any:
    return (sqlite_insert if dialect == "sqlite" else pg_insert)(table)


@functools.cache
def upsert_if_running(dialect: str, table: sqlalchemy.Table, keys: tuple[str, ...]) -> Any:
    """``upsert`` of one row, made only while its trial is RUNNING: the state check and the
    write in one statement (``INSERT ... SELECT ... WHERE EXISTS``); no row returned means the
    trial was not running. Parameters: every column of ``table`` named ``keys`` + the rest."""
    trials = models.TrialModel.__table__
    columns = [c.name for c in table.columns if not c.primary_key]
    row = sqlalchemy.select(
        *(sqlalchemy.bindparam(c, type_=table.c[c].type) for c in columns)
    ).where(
        sqlalchemy.exists().where(
            trials.c.trial_id == sqlalchemy.bindparam("trial_id", type_=trials.c.trial_id.type),
            trials.c.state == TrialState.RUNNING,
        )
    )
    stmt = _insert(dialect, table).from_select(columns, row)
    updates = {c: stmt.excluded[c] for c in columns if c not in keys}
    # RETURNING, not rowcount: PostgreSQL's driver reports -1 for an INSERT ... SELECT here.
    return stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys], set_=updates
    ).returning(table.c[keys[0]])


STATE = sqlalchemy.select(models.TrialModel.state).where(
    models.TrialModel.trial_id == sqlalchemy.bindparam("trial_id")
)
INSERT_PARAM = sqlalchemy.insert(models.TrialParamModel.__table__)
# Dialects that run these statements (upserts, and RETURNING: SQLite 3.35 or later).
FAST = ("sqlite", "postgresql") if sqlite3.sqlite_version_info >= (3, 35) else ("postgresql",)


_T = models.TrialModel
# What Optuna's trial cache asks for, less the trials this process keeps: a finished one does
# not change; a running one only if another worker failed it.
_NEW = sqlalchemy.and_(
    _T.study_id == sqlalchemy.bindparam("study_id"),
    sqlalchemy.or_(
        _T.trial_id > sqlalchemy.bindparam("after"),
        _T.trial_id.in_(sqlalchemy.bindparam("unfinished", expanding=True)),
    ),
    sqlalchemy.not_(
        sqlalchemy.or_(
            _T.trial_id.in_(sqlalchemy.bindparam("finished", expanding=True)),
            sqlalchemy.and_(
                _T.trial_id.in_(sqlalchemy.bindparam("running", expanding=True)),
                _T.state == TrialState.RUNNING,
            ),
        )
    ),
)


def _rows_of(model: Any) -> Any:
    return (
        sqlalchemy.select(sqlalchemy.func.count())
        .where(model.trial_id == _T.trial_id)
        .scalar_subquery()
    )


# Each candidate's state and how many rows it has in each table Optuna writes while a trial
# runs (a suggested parameter, a reported epoch, an attribute): when none changed since the
# last read, the trial has not changed as far as a sampler or pruner can tell.
SIGNATURES = sqlalchemy.select(
    _T.trial_id,
    _T.state,
    _rows_of(models.TrialParamModel),
    _rows_of(models.TrialIntermediateValueModel),
    _rows_of(models.TrialUserAttributeModel),
    _rows_of(models.TrialSystemAttributeModel),
).where(_NEW)
_IDS = sqlalchemy.bindparam("ids", expanding=True)
_TT, _VT = _T.__table__, models.TrialValueModel.__table__
# Whole trials in plain rows (parameter ``ids``): the trials' own columns with their values (a
# row per objective; one with no value while a trial runs), then each of ``PARTS``;
# ``fence.frozen_from_rows`` builds them. The times are the stored columns (naive UTC);
# Optuna's model turns them into local time, and so does fence.
TRIAL_ROWS = (
    sqlalchemy.select(
        _TT.c.trial_id,
        _TT.c.number,
        _TT.c.state,
        _TT.c.datetime_start,
        _TT.c.datetime_complete,
        _VT.c.objective,
        _VT.c.value,
        _VT.c.value_type,
    )
    .select_from(_TT.outerjoin(_VT, _VT.c.trial_id == _TT.c.trial_id))
    .where(_TT.c.trial_id.in_(_IDS))
    .order_by(_TT.c.trial_id, _VT.c.objective)
)


# A RUNNING trial numbered by the count of the study's trials before it (parameters
# ``study_id``, ``start`` as stored): what Optuna's insert, count and update leave, in one
# statement, run with the study's row locked.
_PAST = (
    sqlalchemy.select(sqlalchemy.func.count())
    .select_from(_TT)
    .where(_TT.c.study_id == sqlalchemy.bindparam("study_id"))
    .scalar_subquery()
)
# A trial's state and stored start, its row locked for the state change that follows (parameter
# ``trial_id``); then the change (parameters ``id``, ``new_state``, and the ``start`` and
# ``complete`` times that are set, stored naive UTC; None keeps the stored one).
LOCK_TRIAL = (
    sqlalchemy.select(_TT.c.state, _TT.c.datetime_start)
    .where(_TT.c.trial_id == sqlalchemy.bindparam("trial_id"))
    .with_for_update()
)
SET_STATE = (
    sqlalchemy.update(_TT)
    .where(_TT.c.trial_id == sqlalchemy.bindparam("id"))
    .values(
        state=sqlalchemy.bindparam("new_state", type_=_TT.c.state.type),
        datetime_start=sqlalchemy.func.coalesce(
            sqlalchemy.bindparam("start", type_=_TT.c.datetime_start.type), _TT.c.datetime_start
        ),
        datetime_complete=sqlalchemy.func.coalesce(
            sqlalchemy.bindparam("complete", type_=_TT.c.datetime_complete.type),
            _TT.c.datetime_complete,
        ),
    )
)
LOCK_STUDY = (
    sqlalchemy.select(models.StudyModel.study_id)
    .where(models.StudyModel.study_id == sqlalchemy.bindparam("study_id"))
    .with_for_update()
)
NEW_TRIAL = (
    sqlalchemy.insert(_TT)
    .from_select(
        ["number", "study_id", "state", "datetime_start"],
        sqlalchemy.select(
            _PAST,
            sqlalchemy.bindparam("study_id", type_=_TT.c.study_id.type),
            sqlalchemy.literal(TrialState.RUNNING, _TT.c.state.type),
            sqlalchemy.bindparam("start", type_=_TT.c.datetime_start.type),
        ),
    )
    .returning(_TT.c.trial_id, _TT.c.number)
)


def _part(model: Any, order: Any, *columns: Any) -> Any:
    ids = sqlalchemy.bindparam("ids", expanding=True)
    return (
        sqlalchemy.select(model.trial_id, *columns).where(model.trial_id.in_(ids)).order_by(order)
    )


# One part of some trials (parameter ``ids``), for a trial whose row count changed in that table
# only: another worker's running trial adds an epoch or an attribute many times a second, and
# reading the trial whole for it (through the ORM, every part) was most of what a pruner's read
# cost with 2 workers. In the order of ``SIGNATURES``' counts after the state.
_P, _IV = models.TrialParamModel, models.TrialIntermediateValueModel
_UA, _SA = models.TrialUserAttributeModel, models.TrialSystemAttributeModel
PARTS = (
    _part(_P, _P.param_id, _P.param_name, _P.param_value, _P.distribution_json),
    _part(
        _IV,
        _IV.trial_intermediate_value_id,
        _IV.step,
        _IV.intermediate_value,
        _IV.intermediate_value_type,
    ),
    _part(_UA, _UA.trial_user_attribute_id, _UA.key, _UA.value_json),
    _part(_SA, _SA.trial_system_attribute_id, _SA.key, _SA.value_json),
)
