"""Interrupted trials queued again: a trial stopped by a signal is marked FAIL
(``interrupted``), and GridSampler counts a FAIL as visited, so its parameters must go back in
the queue by hand, once, unless the same configuration and repeat already ran or runs."""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from fishopt.search import space
from fishopt.search.studies import FINISHED, origin_number

# What an interrupted trial's retry keeps of its user attributes: its seed's repeat index and,
# in the tuned protocol, its phase (a confirm run must stay one, with its paired seed).
RETRY_KEEPS = ("repeat", "repeat_of", "phase", "confirm_of", "at_defaults")


def requeue_interrupted(study: optuna.Study) -> int:
    """Re-enqueue the params of trials that failed by interruption and were never finished."""
    trials = study.get_trials(deepcopy=False)

    def key(t: FrozenTrial) -> str:
        # A queued trial has no params yet: enqueue_trial keeps them as its fixed_params, so
        # a second call (another --jobs child, the next run) sees them as queued already.
        params = t.params or t.system_attrs.get("fixed_params") or {}
        repeat = params.get("repeat", t.user_attrs.get("repeat"))
        return space.config_key(params) + str(repeat) + str(t.user_attrs.get("phase", ""))

    done = {
        key(t) for t in trials if t.state in (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    }
    queued = 0
    for t in trials:
        if t.state != TrialState.FAIL or not t.user_attrs.get("interrupted"):
            continue
        if key(t) in done or not t.params:
            continue
        attrs = {k: t.user_attrs[k] for k in RETRY_KEEPS if k in t.user_attrs}
        study.enqueue_trial(t.params, user_attrs={**attrs, "retry_of": origin_number(t)})
        done.add(key(t))
        queued += 1
    return queued
