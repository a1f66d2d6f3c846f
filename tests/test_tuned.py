"""The tuned optimizer protocol: its spec, its planner, one sampler per optimizer, a real run."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from worker_support import env_for, start, trials, wait_exit

from fishopt.errors import FishoptError
from fishopt.search import space, spec, tuned

SMALL = """kind = "optimizers-tuned"
epochs = 1
seed = 0
split = [0.7, 0.2, 0.1]
[sampler]
name = "tpe"
n_startup_trials = 2
[pruner]
name = "none"
[fixed]
hidden = [16]
[tuned]
trials_per_optimizer = 4
confirm_seeds = 3
optimizers = ["SGD", "Adam", "Rprop"]
"""


def _spec(text: str = SMALL, name: str = "small") -> spec.StudySpec:
    import tomllib

    return spec.parse(tomllib.loads(text), name=name)


def test_spec_fills_each_optimizers_own_space_and_refuses_what_would_be_unfair() -> None:
    s = _spec()
    assert s.tuned["trials_per_optimizer"] == 4 and s.tuned["confirm_seeds"] == 3
    assert set(s.tuned["spaces"]["Adam"]) == {"lr", "beta1", "beta2", "eps"}
    assert set(s.tuned["spaces"]["SGD"]) == {"lr", "momentum"}
    assert s.tuned["spaces"]["Adam"]["eps"]["high"] >= 1.0  # eps may grow large (Choi et al.)
    assert spec.StudySpec.from_dict(s.to_dict()) == s
    shipped = spec.load("optimizers-tuned")
    assert len(shipped.tuned["optimizers"]) == 11 and shipped.tuned["confirm_seeds"] == 10
    for bad, where in [
        (SMALL.replace('[pruner]\nname = "none"', '[pruner]\nname = "median"'), "pruner.name"),
        (SMALL + "[space]\nlr = { low = 1e-4, high = 1e-1, log = true }\n", "space.lr"),
        (SMALL.replace("confirm_seeds = 3", "confirm_seeds = 1"), "tuned.confirm_seeds"),
        (SMALL.replace('"Rprop"]', '"SparseAdam"]'), "tuned.optimizers"),
        (SMALL.replace('kind = "optimizers-tuned"', 'kind = "full"'), "tuned"),
    ]:
        with pytest.raises(FishoptError, match=where):
            _spec(bad)


def _run(s: spec.StudySpec, study: optuna.Study, value) -> None:
    """The loop's part of the protocol, without training: plan, then one trial."""

    def objective(trial: optuna.Trial) -> float:
        return value(space.suggest_tuned(trial, s.tuned))

    while len(study.get_trials(states=(TrialState.COMPLETE,))) < tuned.budget(s.tuned):
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        assert waiting or tuned.plan(study, s.tuned, study.get_trials(deepcopy=False))
        study.optimize(objective, n_trials=1)


def test_every_optimizer_gets_k_searches_then_r_paired_confirms_of_its_best() -> None:
    s = _spec()
    seen: dict[str, set[int]] = {}

    class Spy(optuna.samplers.RandomSampler):
        def __init__(self, name: str) -> None:
            super().__init__(seed=len(name))
            self.name = name

        def before_trial(self, study, trial) -> None:
            seen.setdefault(self.name, set()).update(
                t.params.get("optimizer") for t in study.get_trials(deepcopy=False) if t.params
            )

    study = optuna.create_study(direction="maximize", sampler=tuned.PerOptimizerSampler(Spy))
    _run(s, study, lambda o: -abs(__import__("math").log10(o.lr) + 2))  # best lr near 1e-2
    ts = study.get_trials()
    assert len(ts) == 3 * (4 + 3)
    for name in s.tuned["optimizers"]:
        mine = [t for t in ts if t.params["optimizer"] == name]
        search = [t for t in mine if t.user_attrs["phase"] == "search"]
        confirm = [t for t in mine if t.user_attrs["phase"] == "confirm"]
        assert len(search) == 4 and len(confirm) == 3
        best = max(search, key=lambda t: t.value)
        assert {t.user_attrs["confirm_of"] for t in confirm} == {best.number}
        assert all(t.params == best.params for t in confirm)
        assert sorted(t.user_attrs["repeat"] for t in confirm) == [0, 1, 2]
        # Confirms start only after the optimizer's own searches have all finished.
        assert min(t.number for t in confirm) > max(t.number for t in search)
    # Each optimizer's sampler saw only its own optimizer's trials.
    assert all(names <= {name} for name, names in seen.items()), seen
    assert tuned.confirm_seed(0, 1) == tuned.confirm_seed(0, 1) != tuned.confirm_seed(0, 2)


def test_edge_warnings_say_which_end() -> None:
    rng = {"lr": {"low": 1e-5, "high": 1.0, "log": True}, "beta1": {"low": 0.5, "high": 0.99}}
    assert tuned.edge_warnings({"lr": 1e-2, "beta1": 0.7}, rng) == []
    (lr,) = tuned.edge_warnings({"lr": 0.9, "beta1": 0.7}, rng)
    assert "high end" in lr and "log scale" in lr
    (beta,) = tuned.edge_warnings({"lr": 1e-2, "beta1": 0.5}, rng)
    assert beta.startswith("beta1") and "low end" in beta


@pytest.mark.slow
def test_tuned_study_with_two_jobs_runs_the_whole_protocol(tmp_path: Path) -> None:
    spec_file = tmp_path / "small.toml"
    spec_file.write_text(SMALL.replace("trials_per_optimizer = 4", "trials_per_optimizer = 2"))
    url = f"sqlite:///{tmp_path / 't.db'}"
    args = ["study", str(spec_file), "--data", "digits", "--storage", url, "--jobs", "2"]
    w = start([*args, "--cache-dir", str(tmp_path / "cache")], tmp_path / "t.log", env_for(url))
    assert wait_exit([w], timeout=600) == [0], w.output()
    ts = trials(url, "small")
    assert len(ts) == 3 * (2 + 3) and all(t.state == TrialState.COMPLETE for t in ts)
    assert len({t.user_attrs["worker"] for t in ts}) == 2
    confirm = [t for t in ts if t.user_attrs["phase"] == "confirm"]
    by_repeat = {}
    for t in confirm:
        by_repeat.setdefault(t.user_attrs["repeat"], set()).add(t.user_attrs["seed"])
    assert all(len(seeds) == 1 for seeds in by_repeat.values()), "paired seeds across optimizers"
    out = w.output()
    assert "confirm runs" in out and "Traceback" not in out
