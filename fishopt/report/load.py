"""Reading studies for a report: what each study is (kind, question, data) and its trials."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from fishopt.config import mask_url
from fishopt.errors import FishoptError
from fishopt.notes import ATTR
from fishopt.search.storage import open_storage


@dataclass(frozen=True)
class StudyData:
    name: str
    identity: dict  # the study's "fishopt" user attribute; {} for studies fishopt did not make
    trials: tuple[FrozenTrial, ...]
    study: optuna.Study

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


def load_studies(url: str, names: list[str]) -> list[StudyData]:
    """Load the named studies; an unknown name is refused with the names that exist."""
    if url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        if str(path) != ":memory:" and not path.exists():
            # Opening would create an empty database: a report must not leave files behind.
            raise FishoptError(f"no database at {path} (storage {mask_url(url)})")
    storage = open_storage(url, heartbeat=False)
    existing = optuna.study.get_all_study_names(storage)
    missing = [n for n in names if n not in existing]
    if missing:
        raise FishoptError(
            f"no study {', '.join(map(repr, missing))} in {mask_url(url)}; studies there: "
            f"{', '.join(existing) or 'none'}"
        )
    out = []
    for name in dict.fromkeys(names):  # keep order, drop duplicates
        st = optuna.load_study(study_name=name, storage=storage)
        out.append(StudyData(name, dict(st.user_attrs.get(ATTR, {})), tuple(st.get_trials()), st))
    return out
