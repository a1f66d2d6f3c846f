"""The study's trial budget shared by all workers: claiming a slot atomically.

Optuna's MaxTrialsCallback counts finished trials after the fact, so N workers can overshoot
the budget by N-1. Here a worker takes a study-wide lock, fails stale trials, counts the trials
that are RUNNING or finished, and creates (or pops a queued) trial only while that count is below
the budget; the lock is released as soon as the trial exists. RUNNING trials count, so a slot is
never handed out twice; a trial that ends FAIL (a killed worker, an interrupt) frees its slot for
its retry.

The lock itself is the storage's (``storage.locks``).
"""

from __future__ import annotations

import optuna

from fishopt.search.spec import StudySpec

BUDGET_ATTR = "fishopt_budget"  # study user attr: the global trial budget, set by --n-trials


def stored_budget(st: optuna.Study) -> int | None:
    value = st.user_attrs.get(BUDGET_ATTR)
    return int(value) if value is not None else None


def set_budget(st: optuna.Study, n_trials: int) -> None:
    """Record a --n-trials budget in the study, so workers started without it agree."""
    if stored_budget(st) != n_trials:
        st.set_user_attr(BUDGET_ATTR, int(n_trials))


def spec_budget(
    spec: StudySpec, n_trials: int | None = None, distinct_grid: bool = True
) -> int | None:
    """A study's trial budget before it is recorded: flag, then spec, then the grid's size."""
    if n_trials is not None:
        return n_trials
    if spec.n_trials is not None:
        return spec.n_trials
    if spec.tuned:
        from fishopt.search.tuned import budget as tuned_budget

        return tuned_budget(spec.tuned)
    if spec.sampler["name"] == "grid":
        from fishopt.search.space import grid_size

        return grid_size(spec, distinct_grid)
    return None


def budget(st: optuna.Study, spec: StudySpec) -> int | None:
    """The global budget: the study's recorded --n-trials, else the spec's, else the grid."""
    from fishopt.search.studies import ATTR

    attrs = st.user_attrs  # one read: this runs before every claim
    if attrs.get(BUDGET_ATTR) is not None:
        return int(attrs[BUDGET_ATTR])
    return spec_budget(spec, distinct_grid=distinct_grid(attrs.get(ATTR, {})))


GRID_ATTR = "grid"  # in the study's identity: "distinct" once duplicate grid points are dropped


def distinct_grid(identity: dict) -> bool:
    """Whether a study (its identity) drops grid points that repeat a network: all studies
    made since that was added; older ones keep their full grid."""
    return identity.get(GRID_ATTR) == "distinct"
