"""Reading studies for a report: what each study is (kind, question, data) and its trials."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from optuna.trial import FrozenTrial, TrialState

from fishopt.config import StorageURL
from fishopt.errors import FishoptError
from fishopt.search import precision as precisions
from fishopt.search import studies as stored
from fishopt.search.studies import ATTR
from fishopt.storage.connect import open_storage


@dataclass(frozen=True)
class StudyData:
    name: str
    identity: dict  # the study's "fishopt" user attribute; {} for studies fishopt did not make
    trials: tuple[FrozenTrial, ...]
    study: optuna.Study
    precision: str = "unknown"  # what its trials trained in (search.precision.of_study)

    @property
    def spec(self) -> dict:
        return self.identity.get("spec", {})

    @property
    def kind(self) -> str:
        return str(self.spec.get("kind", "custom"))

    @property
    def complete(self) -> list[FrozenTrial]:
        return [t for t in self.trials if t.state == TrialState.COMPLETE and t.value is not None]

    def count(self, state: TrialState) -> int:
        return sum(t.state == state for t in self.trials)


def load_studies(url: StorageURL, names: list[str]) -> list[StudyData]:
    """Load the named studies; an unknown name is refused with the names that exist."""
    path = url.sqlite_path
    if path is not None and not path.exists():
        # Opening would create an empty database: a report must not leave files behind.
        raise FishoptError(f"no database at {path} (storage {url.masked})")
    storage = open_storage(url, heartbeat=False)
    existing = stored.names(storage)
    missing = [n for n in names if n not in existing]
    if missing:
        raise stored.missing_error(missing, storage, url)
    # keep order, drop duplicates
    return [
        study_data(optuna.load_study(study_name=name, storage=storage))
        for name in dict.fromkeys(names)
    ]


def study_data(st: optuna.Study) -> StudyData:
    """What a report reads of one study (``fishopt study`` prints its answer from it too)."""
    attrs, trials = st.user_attrs, tuple(st.get_trials())
    return StudyData(
        st.study_name, dict(attrs.get(ATTR, {})), trials, st, precisions.of_study(attrs, trials)
    )
