"""Was it enough? For a search study (full, tuned): how likely more trials are to help.

A search study has no table to replay: it tried each configuration once. Two readings of its
own trials answer instead:

- Optuna's regret bound (``optuna.terminator.RegretBoundEvaluator``, Makarova et al. 2022):
  a Gaussian process fitted to the better half of the trials bounds, with high probability,
  how far the best value found may be below the best in the space. Where that bound is below
  the seed noise of one trial, a better configuration found by more trials could not be told
  from a lucky seed: the search may stop. It needs 20 completed trials.
- The budget curve (Dodge et al. 2019): the expected best of k of the trials, so the gain of
  the last doubling (best of n against best of n/2) says whether the search was still
  finding better configurations.

The report page calls ``more_trials(study.get_trials(), noise)``; ``noise`` is the seed noise
of one trial's value: ``Table.trial_noise()`` of a grid over the same space and data when there
is one, else one F1 point.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from fishopt.stats import expected_max

MIN_TRIALS = 20  # what the regret bound needs (Optuna's own minimum)


@dataclass(frozen=True)
class Outlook:
    trials: int  # completed trials
    best: float
    best_at: int  # which completed trial (1-based, in order) first reached the best
    doubling_gain: float  # expected best of all trials minus that of half of them
    regret_bound: float | None  # None: too few trials, or the bound could not be computed
    noise: float
    sentence: str


def regret_bound(trials: Sequence[FrozenTrial], seed: int = 0) -> float | None:
    """Optuna's high-probability bound on what the best trial falls short of the optimum."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if len(done) < MIN_TRIALS:
        return None
    try:
        with warnings.catch_warnings():
            # The terminator is experimental, and deprecated since Optuna 4.9 (its removal is
            # planned for 6.0); the budget curve answers without it.
            warnings.simplefilter("ignore")
            from optuna.terminator import RegretBoundEvaluator

            bound = RegretBoundEvaluator(seed=seed).evaluate(done, StudyDirection.MAXIMIZE)
    except (ImportError, ValueError, RuntimeError):
        return None
    return float(bound)


def more_trials(trials: Sequence[FrozenTrial], noise: float = 0.01) -> Outlook:
    """How likely more trials are to help, in one sentence and the figures behind it."""
    done = sorted(
        (t for t in trials if t.state == TrialState.COMPLETE and t.value is not None),
        key=lambda t: t.number,
    )
    values = [float(t.value) for t in done]  # type: ignore[arg-type]
    n = len(values)
    if n < 2:
        return Outlook(
            n,
            max(values, default=float("nan")),
            n,
            float("nan"),
            None,
            noise,
            f"{n} completed trial(s): too few to say whether more would help",
        )
    best = max(values)
    best_at = values.index(best) + 1
    gain = expected_max(values, n)[0] - expected_max(values, max(1, n // 2))[0]
    bound = regret_bound(done)
    pts = 100 * noise
    curve = (
        f"the budget curve gained {100 * gain:.1f} F1 points from {n // 2} to {n} trials; "
        f"the best came at trial {best_at} of {n}"
    )
    if bound is None:
        verdict = (
            "more trials are likely to help"
            if gain > noise
            else "more trials are unlikely to help much"
        )
        than = "more" if gain > noise else "less"
        why = f"(the last doubling gained {than} than the seed noise, {pts:.1f} points)"
        return Outlook(n, best, best_at, gain, None, noise, f"{verdict} {why}: {curve}")
    if bound <= noise:
        head = (
            f"more trials are unlikely to help: at most {100 * bound:.1f} F1 points are left "
            f"to find (Optuna's regret bound), less than one trial's seed noise ({pts:.1f})"
        )
    else:
        head = (
            f"more trials may help: up to {100 * bound:.1f} F1 points may be left to find "
            f"(Optuna's regret bound), more than one trial's seed noise ({pts:.1f})"
        )
    return Outlook(n, best, best_at, gain, bound, noise, f"{head}; {curve}")


def study_outlook(study: optuna.Study, noise: float = 0.01) -> Outlook:
    return more_trials(study.get_trials(deepcopy=False), noise)
