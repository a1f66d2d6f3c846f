"""Studies in storage: finding one by name, its best trial, its trial-state tallies.

The lowest module of ``search``: it imports neither torch nor the training code, so the report,
the dashboard notes and the doctor read studies through it without loading a network.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

import optuna
from optuna.storages import BaseStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from fishopt.config import StorageURL
from fishopt.errors import FishoptError
from fishopt.storage import fence, reads

ATTR = "fishopt"  # study user attribute: what the study was created from (spec, data, split)
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def names(storage: BaseStorage) -> list[str]:
    return optuna.study.get_all_study_names(storage)


def missing_error(wanted: Iterable[str], storage: BaseStorage, url: StorageURL) -> FishoptError:
    """The one wording of "no such study", naming the studies that do exist."""
    there = names(storage)
    return FishoptError(
        f"no study {', '.join(map(repr, wanted))} in {url.masked}; studies there: "
        f"{', '.join(there) or 'none'}"
    )


def load(name: str, storage: BaseStorage, url: StorageURL) -> optuna.Study:
    """An existing study, or a one-line error naming the ones that exist."""
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        raise missing_error([name], storage, url) from None


def completed(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]


def best_completed(trials: Iterable[FrozenTrial]) -> FrozenTrial | None:
    """The completed trial with the highest value; ties go to the earliest trial."""
    done = completed(trials)
    return max(done, key=lambda t: (float(t.value), -t.number)) if done else None  # type: ignore[arg-type]


def origin_number(trial: optuna.Trial | FrozenTrial) -> int:
    """A retried trial keeps the seed of the trial it retries, so the retry is exact."""
    frozen = trial if isinstance(trial, FrozenTrial) else fence.frozen_of(trial)
    retried = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    if retried is not None:
        return int(retried)
    number = frozen.user_attrs.get("retry_of")
    return int(number) if number is not None else frozen.number


@dataclass(frozen=True)
class Tally:
    """How many trials are in each state."""

    complete: int = 0
    pruned: int = 0
    failed: int = 0
    running: int = 0
    waiting: int = 0

    @property
    def finished(self) -> int:
        """COMPLETE + PRUNED: what a trial budget counts."""
        return self.complete + self.pruned

    @property
    def claimed(self) -> int:
        """Finished or running: budget slots that are taken."""
        return self.finished + self.running

    @property
    def total(self) -> int:
        return self.complete + self.pruned + self.failed + self.running + self.waiting

    def describe(self) -> str:
        parts = [
            (self.complete, "complete"),
            (self.pruned, "pruned"),
            (self.failed, "failed"),
            (self.running, "running"),
            (self.waiting, "waiting"),
        ]
        return ", ".join(f"{n} {what}" for n, what in parts if n) or "no trials"


def tally(trials: Iterable[FrozenTrial]) -> Tally:
    c = Counter(t.state for t in trials)
    return Tally(
        complete=c[TrialState.COMPLETE],
        pruned=c[TrialState.PRUNED],
        failed=c[TrialState.FAIL],
        running=c[TrialState.RUNNING],
        waiting=c[TrialState.WAITING],
    )


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def state_tally(study: optuna.Study) -> Tally:
    """``tally`` of a study in one query where fishopt's storage is behind it."""
    c = reads.state_counts(study)
    return Tally(
        complete=c.get(TrialState.COMPLETE, 0),
        pruned=c.get(TrialState.PRUNED, 0),
        failed=c.get(TrialState.FAIL, 0),
        running=c.get(TrialState.RUNNING, 0),
        waiting=c.get(TrialState.WAITING, 0),
    )
