"""Every private Optuna (and optuna-dashboard) name fishopt uses, in one fenced room.

Optuna's public API has no trial id, no study id, no one-transaction write and no access to the
tables behind ``RDBStorage``; fishopt needs all of them (a worker's own-trial cache, one-statement
reports, the doctor's queries). Private names can change in any Optuna release, so they are used
here and in the rest of ``fishopt.storage`` only, each listed in ``PRIVATE_NAMES``;
``tests/storage/test_fence.py`` checks every one against the installed Optuna and fails with the
list of those that are gone. ``pyproject.toml`` admits the Optuna minor versions that test
passed on.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib
import importlib.util
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import optuna
import sqlalchemy
from optuna import distributions
from optuna.storages import BaseStorage, RDBStorage
from optuna.storages._rdb import models
from optuna.storages._rdb.storage import _create_scoped_session as scoped_session
from optuna.trial import FrozenTrial, TrialState

__all__ = ["PRIVATE_NAMES", "models", "scoped_session"]

# (module, attribute path) of every private name used under fishopt/storage/. An attribute that
# only exists on instances is checked on an instance (see tests/storage/test_fence.py).
PRIVATE_NAMES: tuple[tuple[str, str], ...] = (
    ("optuna.storages._rdb", "models"),
    ("optuna.storages._rdb.models", "TrialModel._datetime_start_utc"),
    ("optuna.storages._rdb.models", "TrialModel.find_or_raise_by_id"),
    ("optuna.storages._rdb.models", "StudyModel.find_or_raise_by_id"),
    ("optuna.storages._rdb.models", "TrialValueModel.value_to_stored_repr"),
    (
        "optuna.storages._rdb.models",
        "TrialIntermediateValueModel.intermediate_value_to_stored_repr",
    ),
    ("optuna.storages._rdb.models", "TrialHeartbeatModel"),
    ("optuna.storages._rdb.models", "StudyUserAttributeModel"),
    ("optuna.storages._rdb.models", "TrialUserAttributeModel"),
    ("optuna.storages._rdb.models", "TrialParamModel"),
    ("optuna.storages._rdb.models", "TrialSystemAttributeModel"),
    (
        "optuna.storages._rdb.models",
        "TrialIntermediateValueModel.stored_repr_to_intermediate_value",
    ),
    ("optuna.storages._rdb.storage", "_create_scoped_session"),
    ("optuna.storages", "RDBStorage._create_new_trial"),
    ("optuna.storages", "RDBStorage._set_trial_param"),
    ("optuna.storages", "RDBStorage._get_trials"),
    ("optuna.storages", "RDBStorage._get_stale_trial_ids"),
    ("optuna.storages", "RDBStorage._build_frozen_trial_from_trial_model"),
    ("optuna.storages", "RDBStorage._set_trial_attr_without_commit"),
    ("optuna.storages", "RDBStorage.scoped_session"),
    ("optuna.storages._cached_storage", "_CachedStorage._backend"),
    ("optuna.study", "Study._storage"),
    ("optuna.study", "Study._study_id"),
    ("optuna.study", "Study._get_trials"),
    ("optuna.trial", "Trial._trial_id"),
    ("optuna.trial", "Trial._cached_frozen_trial"),
    ("optuna.trial", "FrozenTrial._trial_id"),
    ("optuna.trial", "FrozenTrial._params"),
    ("optuna.trial", "FrozenTrial._distributions"),
    ("optuna.trial", "FrozenTrial._user_attrs"),
    ("optuna.trial", "FrozenTrial._system_attrs"),
    ("optuna_dashboard._note", "save_note"),
    ("optuna_dashboard._note", "note_ver_key"),
)


def missing_names(instances: dict[str, Any] | None = None) -> list[str]:
    """The entries of ``PRIVATE_NAMES`` the installed Optuna lacks. ``instances`` maps a class
    name to a live instance, for attributes that are set in ``__init__``."""
    instances = instances or {}
    missing = []
    for module_name, path in PRIVATE_NAMES:
        try:
            obj: Any = importlib.import_module(module_name)
        except ImportError:
            missing.append(f"{module_name} (module)")
            continue
        head, *rest = path.split(".")
        obj = getattr(obj, head, None)
        if obj is not None and rest and instances.get(head) is not None:
            obj = instances[head]
        for part in rest:
            if obj is None:
                break
            obj = getattr(obj, part, None)
        if obj is None:
            missing.append(f"{module_name}.{path}")
    return missing


# ----------------------------------------------------------------- the adapter the rest calls


def trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The storage's id of a trial (unique across studies; ``number`` is per study)."""
    return trial._trial_id


def study_id(study: optuna.Study) -> int:
    return study._study_id


def storage_of(study: optuna.Study) -> BaseStorage:
    """The storage a study reads through (Optuna's per-process cache in front of it)."""
    return study._storage


def backend_of(study: optuna.Study) -> BaseStorage:
    """The storage behind Optuna's per-study cache wrapper (fishopt's ``Storage``, usually)."""
    return getattr(study._storage, "_backend", study._storage)


def frozen_of(trial: optuna.Trial) -> FrozenTrial:
    """The running trial as Optuna created it (enqueued attributes, retry marks), without a
    query where Optuna kept it."""
    cached = getattr(trial, "_cached_frozen_trial", None)
    return cached if cached is not None else trial.study._storage.get_trial(trial._trial_id)


def rdb_session(storage: RDBStorage, commit: bool = False) -> Any:
    """A SQLAlchemy session of ``storage`` that commits (or rolls back) as Optuna's do."""
    return scoped_session(storage.scoped_session, commit)


@contextlib.contextmanager
def rdb_connection(storage: RDBStorage, ignore_integrity_error: bool = False) -> Iterator[Any]:
    """A plain connection of ``storage`` in one transaction, for statements that need no ORM
    object: an ORM session's set-up and commit cost as much as running one of them (0.15 ms of
    0.3, a dozen times a trial). Committed at the end; errors are raised as Optuna's sessions
    raise them (a database error as ``StorageInternalError``), which the retries know."""
    try:
        with storage.engine.begin() as conn:
            yield conn
    except sqlalchemy.exc.IntegrityError:
        if not ignore_integrity_error:
            raise
    except sqlalchemy.exc.SQLAlchemyError as exc:
        raise optuna.exceptions.StorageInternalError(
            "An exception is raised during the commit."
        ) from exc


def set_param(trial: FrozenTrial, name: str, value: Any, distribution: Any) -> None:
    """Change a kept FrozenTrial in place (its public setters re-validate the whole trial)."""
    trial._params[name] = value
    trial._distributions[name] = distribution


def with_part(trial: FrozenTrial, part: int, rows: list[tuple]) -> FrozenTrial:
    """A copy of ``trial`` with one part replaced by its rows as read (``statements.PARTS``:
    0 parameters, 1 intermediate values, 2 user attributes, 3 system attributes), decoded as
    Optuna's ``_build_frozen_trial_from_trial_model`` does. The other parts are shared with
    ``trial``, which is left as it was."""
    out = copy.copy(trial)
    _set_part(out, part, rows)
    return out


def _set_part(trial: FrozenTrial, part: int, rows: list[tuple]) -> None:
    if part == 0:
        dists = {name: distributions.json_to_distribution(js) for name, _v, js in rows}
        trial._params = {name: dists[name].to_external_repr(v) for name, v, _js in rows}
        trial._distributions = dists
    elif part == 1:
        decode = models.TrialIntermediateValueModel.stored_repr_to_intermediate_value
        trial.intermediate_values = {step: decode(v, kind) for step, v, kind in rows}
    elif part == 2:
        trial._user_attrs = {key: json.loads(js) for key, js in rows}
    else:
        trial._system_attrs = {key: json.loads(js) for key, js in rows}


def frozen_from_rows(row: tuple, values: list[tuple], parts: list[list[tuple]]) -> FrozenTrial:
    """A trial from plain rows (its ``statements.TRIAL_ROWS`` row, the values that row joined,
    and its rows of each of ``PARTS``), equal to what Optuna builds from its ORM objects, for
    a fraction of the cost: building the ORM objects cost more than the queries (about 2 ms a
    trial, once for every trial another worker ran)."""
    trial_id, number, state, start, complete = row
    decode = models.TrialValueModel.stored_repr_to_value
    stored = [decode(v, kind) for _objective, v, kind in sorted(values)] or None
    trial = _bare(trial_id, number, state, stored, local_time(start), local_time(complete))
    for part, rows in enumerate(parts):
        _set_part(trial, part, rows)
    return trial


def new_frozen(trial_id: int, number: int, start: datetime) -> FrozenTrial:
    """A trial just created RUNNING, as Optuna's ``_create_new_trial`` returns it."""
    return _bare(trial_id, number, TrialState.RUNNING, None, start, None)


def _bare(
    trial_id: int,
    number: int,
    state: TrialState,
    values: list[float] | None,
    start: datetime | None,
    complete: datetime | None,
) -> FrozenTrial:
    """A trial with no parameters, attributes or reports (yet)."""
    return FrozenTrial(
        number=number,
        state=state,
        value=None,
        values=values,
        datetime_start=start,
        datetime_complete=complete,
        params={},
        distributions={},
        user_attrs={},
        system_attrs={},
        intermediate_values={},
        trial_id=trial_id,
    )


def stored_time(local: datetime) -> datetime:
    """A naive local time as Optuna's models store it: naive UTC."""
    return local.astimezone(UTC).replace(tzinfo=None)


def local_time(stored: datetime | None) -> datetime | None:
    """A stored time (naive UTC) as Optuna's models give it: naive local time."""
    if stored is None:
        return None
    return stored.replace(tzinfo=UTC).astimezone().replace(tzinfo=None)


def update_user_attrs(trial: FrozenTrial, attrs: dict[str, Any]) -> None:
    trial._user_attrs.update(attrs)


def set_system_attr(trial: FrozenTrial, key: str, value: Any) -> None:
    trial._system_attrs[key] = value


@dataclass(frozen=True)
class TrialRef:
    """What ``optuna_dashboard.save_note`` reads from a trial (storage, study, trial id).

    A live ``optuna.Trial`` cannot be rebuilt for a finished trial (its constructor asks the
    sampler to start a trial), so a note is addressed through these three fields instead.
    """

    storage: BaseStorage
    study: optuna.Study
    _trial_id: int


def trial_ref(study: optuna.Study, trial: FrozenTrial) -> TrialRef:
    return TrialRef(study._storage, study, trial._trial_id)


@functools.cache
def dashboard_notes() -> ModuleType:
    """optuna-dashboard's note module (``save_note``, ``get_note``), without its package.

    ``import optuna_dashboard`` loads the web app and, through its importance view,
    scikit-learn and scipy: 1.3 s of CPU in every worker that creates a study only to write its
    note. ``_note`` needs nothing but Optuna, so it is loaded from its file under a name of its
    own; a process that has imported the dashboard already uses the dashboard's copy.
    """
    loaded = sys.modules.get("optuna_dashboard._note")
    if loaded is not None:
        return loaded
    package = importlib.util.find_spec("optuna_dashboard")
    if package is None or not package.submodule_search_locations:
        raise ImportError("optuna-dashboard is not installed", name="optuna_dashboard")
    path = f"{next(iter(package.submodule_search_locations))}/_note.py"
    spec = importlib.util.spec_from_file_location("fishopt.storage._dashboard_note", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"optuna-dashboard has no {path}", name="optuna_dashboard")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def system_attrs(study: optuna.Study) -> dict[str, Any]:
    """The study's system attributes, read once (``Study.system_attrs`` is deprecated)."""
    return study._storage.get_study_system_attrs(study._study_id)


def noted(attrs: dict[str, Any], trial_ids: Iterable[int]) -> set[int | None]:
    """Which of these have a dashboard note, from the study's system attributes (``attrs``):
    the study (``None``) and its trials. ``optuna_dashboard.get_note`` reads them all again for
    every note: a dashboard starting on a storage with 300 studies and 3,000 trials spent 16 s
    of its 20 s doing that. A note counts once the dashboard has a version of it, written by
    fishopt or edited by a user in the dashboard (emptied too: that choice stands)."""
    version = dashboard_notes().note_ver_key
    return {i for i in (None, *trial_ids) if version(i) in attrs}


def write_note(target: optuna.Study | TrialRef, body: str) -> None:
    """``optuna_dashboard.save_note``: a study's or a trial's note, in the dashboard's format."""
    dashboard_notes().save_note(target, body)


class FilteredStudy:
    """A study as a sampler should see it: only the trials ``keep`` accepts, each as ``view``
    shows it (unchanged by default).

    Optuna's samplers read a study's trials through ``get_trials`` and its private
    ``_get_trials``; both are filtered here, everything else is the study's own.
    """

    def __init__(
        self,
        study: optuna.Study,
        keep: Callable[[FrozenTrial], bool],
        view: Callable[[FrozenTrial], FrozenTrial] = lambda t: t,
    ) -> None:
        self._study = study
        self._keep = keep
        self._view = view

    def _get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        return [self._view(t) for t in self._study._get_trials(*args, **kwargs) if self._keep(t)]

    def get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        return [self._view(t) for t in self._study.get_trials(*args, **kwargs) if self._keep(t)]

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._study, attr)
