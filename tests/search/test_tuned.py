"""The tuned protocol: ranges around torch's defaults, the first trial at them, the planner,
paired confirm and defaults runs scored apart from the search, one precision, old studies."""

from __future__ import annotations

import dataclasses
import inspect
import math
import tomllib
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from optuna.trial import TrialState
from worker_support import env_for, start, trials, wait_exit

from fishopt.errors import FishoptError
from fishopt.report import tuned as report_tuned
from fishopt.search import holdout, loop, objective, ranges, space, spec, summary, tuned
from fishopt.search import precision as precisions
from fishopt.search.session import Options, open_session
from fishopt.training import optim

SMALL = """kind = "optimizers-tuned"
epochs = 1
seed = 0
split = [0.7, 0.2, 0.1]
[sampler]
name = "random"
[pruner]
name = "none"
[fixed]
hidden = [8]
[tuned]
trials_per_optimizer = 4
confirm_seeds = 3
optimizers = ["SGD", "Adam", "Rprop"]
"""
# What the ranges of a study made before protocol 2 recorded (fishopt's tuned protocol as it
# first shipped): such studies must keep resuming and reporting as they ran.
OLD_SPACES = {
    "SGD": {
        "lr": {"low": 1e-4, "high": 1.0, "log": True},
        "momentum": {"low": 0.0, "high": 0.99, "log": False},
    },
    "Adam": {
        "lr": {"low": 1e-5, "high": 1.0, "log": True},
        "beta1": {"low": 0.5, "high": 0.99, "log": False},
        "beta2": {"low": 0.9, "high": 0.9999, "log": False},
        "eps": {"low": 1e-10, "high": 1.0, "log": True},
    },
    "Rprop": {
        "lr": {"low": 1e-5, "high": 1.0, "log": True},
        "eta_minus": {"low": 0.1, "high": 0.9, "log": False},
        "eta_plus": {"low": 1.05, "high": 2.0, "log": False},
    },
}


def _spec(text: str = SMALL, name: str = "small") -> spec.StudySpec:
    return spec.parse(tomllib.loads(text), name=name)


def _old(s: spec.StudySpec) -> spec.StudySpec:
    """``s`` as a study made before protocol 2 recorded it."""
    old = {k: v for k, v in s.tuned.items() if k not in ("protocol", "spaces")}
    spaces = {n: OLD_SPACES[n] for n in old["optimizers"]}
    return dataclasses.replace(s, tuned={**old, "spaces": spaces}, sampler={"name": "tpe"})


def test_spec_fills_each_optimizers_own_space_and_refuses_what_would_be_unfair() -> None:
    s = _spec()
    assert s.tuned["trials_per_optimizer"] == 4 and s.tuned["confirm_seeds"] == 3
    assert s.tuned["protocol"] == tuned.PROTOCOL == 2
    assert set(s.tuned["spaces"]["Adam"]) == {"lr", "beta1", "beta2", "eps"}
    assert set(s.tuned["spaces"]["SGD"]) == {"lr", "momentum"}
    assert tuned.budget(s.tuned) == 3 * (4 + 2 * 3)  # search, confirm, defaults
    assert spec.StudySpec.from_dict(s.to_dict()) == s
    shipped = spec.load("optimizers-tuned")
    assert len(shipped.tuned["optimizers"]) == 11 and shipped.sampler["name"] == "random"
    for bad, where in [
        (SMALL.replace('[pruner]\nname = "none"', '[pruner]\nname = "median"'), "pruner.name"),
        (SMALL + "[space]\nlr = { low = 1e-4, high = 1e-1, log = true }\n", "space.lr"),
        (SMALL.replace("confirm_seeds = 3", "confirm_seeds = 1"), "tuned.confirm_seeds"),
        (SMALL.replace('"Rprop"]', '"SparseAdam"]'), "tuned.optimizers"),
        (SMALL.replace('kind = "optimizers-tuned"', 'kind = "full"'), "tuned"),
        (SMALL.replace('name = "random"', 'name = "cmaes"'), "sampler.name"),
        (SMALL.replace("seed = 0", "seed = 0\nvary_split = true"), "vary_split"),
    ]:
        with pytest.raises(FishoptError, match=where):
            _spec(bad)


def _signature_default(name: str, setting: str) -> float:
    """torch's default, read here independently of the code under test."""
    params = inspect.signature(getattr(torch.optim, name)).parameters
    pairs = {"beta1": ("betas", 0), "beta2": ("betas", 1)}
    pairs |= {"eta_minus": ("etas", 0), "eta_plus": ("etas", 1)}
    if setting in pairs:
        joined, i = pairs[setting]
        return float(params[joined].default[i])
    return float(params[setting].default)


def _where(v: float, r: dict) -> float:
    """Position on the search scale: log for log, log(1 - v) for settings near 1."""
    f = {
        "log": math.log,
        "log1m": lambda x: -math.log(1 - x),
        "linear": lambda x: x,
    }[r["scale"]]
    return (f(v) - f(r["low"])) / (f(r["high"]) - f(r["low"]))


@pytest.mark.parametrize("weight_decay", [False, True])
def test_every_default_lies_in_the_middle_half_of_its_range_on_its_search_scale(
    weight_decay: bool,
) -> None:
    """Zero defaults (momentum, weight decay but AdamW's) have no centre on their scale: the
    stated treatment is momentum's range ending at 0 and weight decay left out at defaults."""
    names = list(optim.OPTIMIZERS)
    for name, sp in tuned.spaces(names, weight_decay).items():
        assert ("weight_decay" in sp) == (weight_decay and name != "Rprop")
        for setting, r in sp.items():
            default = _signature_default(name, setting)
            assert r["default"] == default, (name, setting)
            where = f"{name}.{setting} = {default} in {r['low']}..{r['high']} ({r['scale']})"
            if default == 0:
                if setting == "momentum":
                    assert r["low"] == 0 and _where(0.0, r) == 0, where
                    assert 0.25 <= _where(0.9, r) <= 0.75, where  # centred on the usual 0.9
                else:
                    assert setting == "weight_decay" and not ranges.contains_default(r), where
                continue
            assert 0.25 <= _where(default, r) <= 0.75, where
            assert _where(default, r) == pytest.approx(0.5), where  # centred, in fact
            assert r["scale"] == ("log1m" if setting in ("beta1", "beta2", "rho") else r["scale"])


@pytest.mark.parametrize("weight_decay", [False, True])
def test_the_first_search_trial_of_each_optimizer_is_exactly_torchs_defaults(
    weight_decay: bool,
) -> None:
    names = list(optim.OPTIMIZERS)
    text = SMALL.replace('optimizers = ["SGD", "Adam", "Rprop"]', f"optimizers = {names!r}")
    s = _spec(text.replace("[tuned]", f"[tuned]\nweight_decay = {str(weight_decay).lower()}"))
    study = optuna.create_study(
        direction="maximize",
        sampler=tuned.PerOptimizerSampler(
            lambda _n: optuna.samplers.RandomSampler(seed=0), s.tuned["spaces"]
        ),
    )
    layer = torch.nn.Linear(3, 2)
    for _ in names:  # each optimizer's first search trial, in turn
        assert tuned.plan(study, s.tuned, study.get_trials(deepcopy=False))
        trial = study.ask()
        assert trial.user_attrs == {"phase": "search", "at_defaults": True}
        got = optim.build_optimizer(space.suggest_tuned(trial, s.tuned), layer.parameters())
        name = trial.params["optimizer"]
        plain = getattr(torch.optim, name)(torch.nn.Linear(3, 2).parameters())
        drop = {"foreach", "fused"}
        assert {k: v for k, v in got.defaults.items() if k not in drop} == {
            k: v for k, v in plain.defaults.items() if k not in drop
        }, name
        study.tell(trial, 0.0)
    assert {t.params["optimizer"] for t in study.trials} == set(names)


def test_settings_near_one_are_drawn_log_uniformly_in_one_minus_the_value() -> None:
    """beta2 in 0.99..0.9999 drawn on log(1 - beta2): half the draws fall below torch's 0.999
    (a linear draw puts 91% there). The trial still records beta2 itself."""
    s = _spec(SMALL.replace('["SGD", "Adam", "Rprop"]', '["Adam"]'))
    study = optuna.create_study(
        direction="maximize",
        sampler=tuned.PerOptimizerSampler(
            lambda _n: optuna.samplers.RandomSampler(seed=1), s.tuned["spaces"]
        ),
    )
    n = 400
    for _ in range(n):
        study.enqueue_trial({"optimizer": "Adam"}, user_attrs={"phase": "search"})
        trial = study.ask()
        space.suggest_tuned(trial, s.tuned)
        study.tell(trial, 0.0)
    beta2 = np.array([t.params["beta2"] for t in study.trials])
    beta1 = np.array([t.params["beta1"] for t in study.trials])
    assert ((beta2 >= 0.99) & (beta2 <= 0.9999)).all() and ((beta1 >= 0) & (beta1 <= 0.99)).all()
    band = 3.5 * math.sqrt(0.25 / n)  # binomial sd at p = 1/2
    assert abs(np.mean(beta2 < 0.999) - 0.5) < band
    assert abs(np.mean(beta1 < 0.9) - 0.5) < band
    assert abs(np.mean(np.log10(1 - beta2)) + 3) < 0.1  # centred on 1 - 0.999
    # TPE learns from the same view: 1 - beta2, log-uniform, and draws stay in range.
    tpe = optuna.create_study(
        direction="maximize",
        sampler=tuned.PerOptimizerSampler(
            lambda _n: optuna.samplers.TPESampler(seed=0, n_startup_trials=3), s.tuned["spaces"]
        ),
    )
    for i in range(8):
        tpe.enqueue_trial({"optimizer": "Adam"}, user_attrs={"phase": "search"})
        trial = tpe.ask()
        o = space.suggest_tuned(trial, s.tuned)
        tpe.tell(trial, -abs(math.log10(1 - dict(o.options)["beta2"]) + 3.5) + i * 0)
    assert all(0.99 <= t.params["beta2"] <= 0.9999 for t in tpe.trials)


def _run(s: spec.StudySpec, study: optuna.Study, value) -> None:
    """The loop's part of the protocol, without training: plan, then one trial."""

    def objective_(trial: optuna.Trial) -> float:
        return value(space.suggest_tuned(trial, s.tuned))

    while len(study.get_trials(states=(TrialState.COMPLETE,))) < tuned.budget(s.tuned):
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        assert waiting or tuned.plan(study, s.tuned, study.get_trials(deepcopy=False))
        study.optimize(objective_, n_trials=1)


@pytest.mark.parametrize("protocol", [2, 1])
def test_every_optimizer_gets_k_searches_then_r_paired_confirm_and_defaults_runs(
    protocol: int,
) -> None:
    s = _spec() if protocol == 2 else _old(_spec())
    seen: dict[str, set[str]] = {}

    class Spy(optuna.samplers.RandomSampler):
        def __init__(self, name: str) -> None:
            super().__init__(seed=len(name))
            self.name = name

        def before_trial(self, study, trial) -> None:
            seen.setdefault(self.name, set()).update(
                t.params.get("optimizer") for t in study.get_trials(deepcopy=False) if t.params
            )

    study = optuna.create_study(
        direction="maximize", sampler=tuned.PerOptimizerSampler(Spy, s.tuned["spaces"])
    )
    _run(s, study, lambda o: -abs(math.log10(o.lr) + 2))  # best lr near 1e-2
    ts = study.get_trials()
    runs = 2 if protocol == 2 else 1
    assert len(ts) == 3 * (4 + runs * 3) == tuned.budget(s.tuned)
    for name in s.tuned["optimizers"]:
        mine = [t for t in ts if t.params["optimizer"] == name]
        search = [t for t in mine if t.user_attrs["phase"] == "search"]
        confirm = [t for t in mine if t.user_attrs["phase"] == "confirm"]
        defaults = [t for t in mine if t.user_attrs["phase"] == "defaults"]
        assert len(search) == 4 and len(confirm) == 3 and len(defaults) == 3 * (runs - 1)
        assert bool(search[0].user_attrs.get("at_defaults")) == (protocol == 2)
        best = max(search, key=lambda t: (t.value, -t.number))
        assert {t.user_attrs["confirm_of"] for t in confirm} == {best.number}
        assert all(t.params == best.params for t in confirm)
        assert sorted(t.user_attrs["repeat"] for t in confirm) == [0, 1, 2]
        if protocol == 2:
            assert sorted(t.user_attrs["repeat"] for t in defaults) == [0, 1, 2]
            assert all(t.params == search[0].params for t in defaults)
        # Confirm and defaults runs start only after the optimizer's searches have finished.
        assert min(t.number for t in confirm + defaults) > max(t.number for t in search)
    # Each optimizer's sampler saw only its own optimizer's trials.
    assert all(names <= {name} for name, names in seen.items()), seen
    assert tuned.confirm_seed(0, 1) == tuned.confirm_seed(0, 1) != tuned.confirm_seed(0, 2)


def test_an_interrupted_confirm_run_is_queued_again_once_and_stays_a_confirm_run() -> None:
    from fishopt.search import requeue

    study = optuna.create_study()
    attrs = {"phase": "confirm", "confirm_of": 3, "repeat": 1, "interrupted": True}
    study.add_trial(
        optuna.trial.create_trial(
            params={"optimizer": "Adam"},
            distributions={"optimizer": optuna.distributions.CategoricalDistribution(["Adam"])},
            state=TrialState.FAIL,
            user_attrs=attrs,
        )
    )
    assert requeue.requeue_interrupted(study) == 1
    assert requeue.requeue_interrupted(study) == 0  # the queued retry counts as done
    (again,) = study.get_trials(states=(TrialState.WAITING,))
    assert {k: again.user_attrs[k] for k in ("phase", "confirm_of", "repeat")} == {
        "phase": "confirm",
        "confirm_of": 3,
        "repeat": 1,
    }


def test_edge_warnings_say_which_end_on_the_search_scale() -> None:
    rng = {"lr": {"low": 1e-5, "high": 1.0, "log": True}, "beta1": {"low": 0.5, "high": 0.99}}
    assert tuned.edge_warnings({"lr": 1e-2, "beta1": 0.7}, rng) == []
    (lr,) = tuned.edge_warnings({"lr": 0.9, "beta1": 0.7}, rng)
    assert "high end" in lr and "log scale" in lr
    (beta,) = tuned.edge_warnings({"lr": 1e-2, "beta1": 0.5}, rng)
    assert beta.startswith("beta1") and "low end" in beta
    adam = _spec().tuned["spaces"]["Adam"]
    # 0.9985 is near 0.9999 on a linear scale, but mid-range on log(1 - beta2).
    assert tuned.edge_warnings({"beta2": 0.9985}, adam) == []
    (near,) = tuned.edge_warnings({"beta2": 0.99989}, adam)
    assert near.startswith("beta2 = 0.99989 is at the high end") and "1 - beta2" in near
    sgd = _spec().tuned["spaces"]["SGD"]
    assert tuned.edge_warnings({"momentum": 0.0}, sgd) == []  # torch's default, on purpose
    assert tuned.edge_warnings({"momentum": 0.1}, sgd) == []  # low on log(1 - m), cannot go lower
    assert tuned.edge_warnings({"momentum": 0.989}, sgd) != []  # could go higher


def test_validation_halves_are_disjoint_stratified_and_seeded() -> None:
    y = np.repeat(np.arange(5), [7, 8, 1, 2, 9])
    select, report = holdout.halves(y, seed=3)
    assert not set(select) & set(report) and sorted([*select, *report]) == list(range(len(y)))
    for c in range(5):
        a, b = int(np.sum(y[select] == c)), int(np.sum(y[report] == c))
        assert abs(a - b) <= 1
    assert abs(len(select) - len(report)) <= 1
    again = holdout.halves(y, seed=3)
    assert np.array_equal(again[0], select)
    assert not np.array_equal(holdout.halves(y, seed=4)[0], select)


def _options(tmp_path: Path, study: str, **kw: object) -> Options:
    return Options(
        study=study,
        data="digits",
        storage=f"sqlite:///{tmp_path / 't.db'}",
        cache_dir=tmp_path / "cache",
        artifacts_dir=tmp_path / "artifacts",
        threads=1,
        **kw,  # type: ignore[arg-type]
    )


def test_confirm_and_defaults_runs_are_paired_and_scored_where_the_search_never_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real study on digits: every trial trains and picks its epoch on the selection half;
    only confirm and defaults runs are scored, once, on the reporting half; the r-th confirm
    and defaults runs of every optimizer share one seed, which no search trial has."""
    path = tmp_path / "small.toml"
    path.write_text(
        SMALL.replace('["SGD", "Adam", "Rprop"]', '["SGD", "Adam"]')
        .replace("trials_per_optimizer = 4", "trials_per_optimizer = 2")
        .replace("confirm_seeds = 3", "confirm_seeds = 2")
    )
    made: list[tuple[torch.Tensor, ...]] = []
    real_split = holdout.split_valid

    def split_valid(X, y, seed):
        made.append(real_split(X, y, seed))
        return made[-1]

    trained_on: list[torch.Tensor] = []
    scored: list[torch.Tensor] = []
    real_train, real_evaluate = objective.train, objective.evaluate

    def train(model_spec, optim_spec, X, y, X_valid, y_valid, config, on_epoch=None):
        trained_on.append(y_valid)
        return real_train(model_spec, optim_spec, X, y, X_valid, y_valid, config, on_epoch)

    def evaluate(model, X, y, n_classes, detailed=False):
        scored.append(y)
        return real_evaluate(model, X, y, n_classes, detailed)

    monkeypatch.setattr(holdout, "split_valid", split_valid)
    monkeypatch.setattr(objective, "train", train)
    monkeypatch.setattr(objective, "evaluate", evaluate)
    session = open_session(_options(tmp_path, str(path)), distributed=False)
    out = loop.run(session, flags=loop.Flags(), log=lambda _m: None)
    assert out.reason == "budget"
    ts = session.study.get_trials(deepcopy=False)
    assert len(ts) == 2 * (2 + 2 * 2) and all(t.state == TrialState.COMPLETE for t in ts)
    (halves,) = made
    y_select, y_report = halves[1], halves[3]
    assert len(y_select) + len(y_report) == len(session.ctx.tensors.y_valid)
    assert all(y is y_select for y in trained_on) and len(trained_on) == len(ts)
    reporting = [t for t in ts if t.user_attrs["phase"] in ("confirm", "defaults")]
    assert sum(y is y_report for y in scored) == len(reporting)  # once per run, no search trial
    for t in ts:
        on = t.user_attrs["scored_on"]
        assert on == ("reporting" if t in reporting else "selection")
        assert t.user_attrs["valid_images"] == len(y_select)
        if t in reporting:
            assert t.value == t.user_attrs["report_f1"] != t.user_attrs.get("select_f1")
            assert t.user_attrs["report_images"] == len(y_report)
    search_seeds = {t.user_attrs["seed"] for t in ts if t not in reporting}
    for r in (0, 1):
        seeds = {t.user_attrs["seed"] for t in reporting if t.user_attrs["repeat"] == r}
        assert len(seeds) == 1 and not seeds & search_seeds, "paired across optimizers, phases"
    a = report_tuned.analyse_tuned(ts, session.spec.to_dict())
    for row in a.rows:
        assert sorted(row.gains) == [0, 1]
        assert row.gains[0] == pytest.approx(row.confirm[0] - row.defaults_runs[0])
        assert row.optimism == pytest.approx(max(row.search_values) - row.tuned.mean)
        assert row.budget[0][1] == row.search_values[0]  # k = 1: the defaults trial


def test_a_study_keeps_the_precision_it_started_with_when_auto_differs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fishopt.training import hardware, train

    path = tmp_path / "p.toml"
    path.write_text(SMALL.replace("trials_per_optimizer = 4", "trials_per_optimizer = 1"))
    opts = _options(tmp_path, str(path), n_trials=1)
    monkeypatch.setattr(train, "native_bf16", lambda: False)  # here auto means fp32
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    first = open_session(opts, distributed=False)
    assert first.precision == "fp32" and first.study.user_attrs["precision"] == "fp32"
    loop.run(first, flags=loop.Flags(), log=lambda _m: None)
    monkeypatch.setattr(train, "native_bf16", lambda: True)  # elsewhere auto means bf16
    monkeypatch.setattr(hardware, "native_bf16", lambda: True)
    assert train.resolve_precision("auto", "cpu", 50) == "bf16"
    again = open_session(dataclasses.replace(opts, n_trials=2), distributed=False)
    assert again.precision == "fp32"
    loop.run(again, flags=loop.Flags(), log=lambda _m: None)
    ts = again.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    assert [t.user_attrs["precision"] for t in ts] == ["fp32", "fp32"]
    # A study made before precisions were recorded keeps what its trials ran in, and a
    # recorded bf16 on a CPU that would emulate it says so, with the way out.
    again.study.set_user_attr("precision", None)
    st = optuna.load_study(study_name="p", storage=again.storage)
    st._storage.set_study_user_attr(st._study_id, "precision", None)
    assert precisions.settle(st, again.spec, "cpu") == ("fp32", [])
    monkeypatch.setattr(hardware, "native_bf16", lambda: False)
    st.set_user_attr("precision", "bf16")
    kept, notes = precisions.settle(st, again.spec, "cpu")
    assert kept == "bf16" and "--name p-fp32" in notes[0]


def test_a_study_made_before_protocol_2_resumes_reports_and_refuses_the_new_spec(
    tmp_path: Path,
) -> None:
    from fishopt.search import session as sessions

    new = _spec(name="old")
    old = _old(new)
    opts = _options(tmp_path, "old")
    settings = sessions.config.resolve(storage=opts.storage, cache_dir=opts.cache_dir)
    ctx, _hit, _s = sessions.build_context(old, sessions.data.parse_source("digits"), settings)
    storage = sessions.open_storage(settings.storage, heartbeat=False)
    st = sessions.open_study(ctx, storage, "old", distributed=False)
    st.enqueue_trial({"optimizer": "SGD"}, user_attrs={"phase": "search"})  # as it once ran
    resumed = open_session(dataclasses.replace(opts, n_trials=3), distributed=False)
    assert resumed.spec.tuned == old.tuned and not tuned.holds_out(resumed.spec.tuned)
    loop.run(resumed, flags=loop.Flags(), log=lambda _m: None)
    ts = resumed.study.get_trials(deepcopy=False)
    assert len(ts) == 3 and all(t.state == TrialState.COMPLETE for t in ts)
    assert not any(t.user_attrs.get("at_defaults") or "scored_on" in t.user_attrs for t in ts)
    a = report_tuned.analyse_tuned(ts, resumed.spec.to_dict())
    assert not a.paired and any("confirm runs finished" in m for m in a.missing)
    path = tmp_path / "old.toml"
    path.write_text(SMALL)
    with pytest.raises(FishoptError, match="different spec"):
        open_session(dataclasses.replace(opts, study=str(path)), distributed=False)


def test_the_budget_curve_of_defaults_first_then_draws_is_exact() -> None:
    """k = 1 is the defaults' score; k = n the best of all; k = 2 the mean over the draws of
    max(defaults, draw)."""
    curve = report_tuned.defaults_first_curve(0.5, [0.2, 0.9, 0.6])
    assert [k for k, _m, _s in curve] == [1, 2, 3, 4]
    assert curve[0][1:] == (0.5, 0.0)
    assert curve[1][1] == pytest.approx((0.5 + 0.9 + 0.6) / 3)
    assert curve[-1][1] == pytest.approx(0.9)
    same = report_tuned.gain_interval([0.0, 0.0, 0.0])  # the best was the defaults: no spread,
    assert same.mean == 0.0 and math.isnan(same.high)  # so no interval, and none is needed
    iv = report_tuned.gain_interval([0.01, 0.03, 0.02, 0.04])
    assert iv.mean == pytest.approx(0.025) and iv.low < iv.mean < iv.high


def _adam_trials(rows: list[tuple[float, dict]]) -> list:
    """Finished Adam trials numbered in order, one per (value, user attributes) row."""
    dist = {"optimizer": optuna.distributions.CategoricalDistribution(["Adam"])}
    ts = []
    for i, (value, attrs) in enumerate(rows):
        t = optuna.trial.create_trial(
            params={"optimizer": "Adam"}, distributions=dist, value=value, user_attrs=attrs
        )
        t.number = i
        ts.append(t)
    return ts


def test_when_no_search_trial_beats_the_defaults_the_page_says_tuning_bought_nothing() -> None:
    spec_dict = _spec(SMALL.replace('["SGD", "Adam", "Rprop"]', '["Adam"]')).to_dict()
    rows = [(0.9, {"phase": "search", "at_defaults": True}), (0.8, {"phase": "search"})]
    rows += [(0.9, {"phase": "search"})]  # a tie goes to the earlier trial: the defaults
    rows += [
        (0.85 + r / 100, {"phase": p, "repeat": r})
        for r in range(3)
        for p in ("defaults", "confirm")
    ]
    ts = _adam_trials(rows)
    a = report_tuned.analyse_tuned(ts, spec_dict)
    (row,) = a.rows
    assert row.best_at_defaults and row.gains == {0: 0.0, 1: 0.0, 2: 0.0}
    assert row.optimism == pytest.approx(0.9 - 0.86)
    assert "Tuning bought Adam nothing" in report_tuned.tuned_opening(a)


def _paired_study(confirm_select: list[float], defaults_select: list[float]) -> list:
    """Adam's search (best 0.95, not the defaults), then paired confirm and defaults runs with
    the given selection-half scores; each run reports its selection score minus 0.01."""
    rows = [(0.9, {"phase": "search", "at_defaults": True}), (0.95, {"phase": "search"})]
    for phase, scores in (("confirm", confirm_select), ("defaults", defaults_select)):
        rows += [
            (f - 0.01, {"phase": phase, "repeat": r, "select_f1": f}) for r, f in enumerate(scores)
        ]
    return _adam_trials(rows)


def test_a_tuned_setting_stands_only_where_its_paired_runs_beat_the_defaults_on_selection() -> None:
    """The second stage of the choice: the search's best against the defaults, seed by seed, on
    the selection half; where it cannot show it is better, the defaults stand (gain 0)."""
    spec_dict = _spec(SMALL.replace('["SGD", "Adam", "Rprop"]', '["Adam"]')).to_dict()
    defaults = [0.80, 0.82, 0.81, 0.83, 0.80]
    better = [d + 0.03 + 0.002 * r for r, d in enumerate(defaults)]
    noisy = [d + (0.02 if r % 2 else -0.02) for r, d in enumerate(defaults)]
    assert tuned.tuning_stands(_paired_study(better, defaults), "Adam")
    assert not tuned.tuning_stands(_paired_study(noisy, defaults), "Adam")
    assert tuned.tuning_stands(_paired_study(noisy[:2], defaults[:2]), "Adam")  # undecided yet
    assert tuned.tuning_stands(_paired_study(noisy, []), "Adam")  # protocol 1: no defaults runs

    kept = report_tuned.analyse_tuned(_paired_study(noisy, defaults), spec_dict)
    (row,) = kept.rows
    assert row.defaults_kept and not row.best_at_defaults
    assert row.confirm == row.defaults_runs and set(row.gains.values()) == {0.0}
    assert row.tuned.mean == pytest.approx(row.defaults.mean)
    # the optimism is still the search's best against the runs that re-ran it
    assert row.optimism == pytest.approx(0.95 - (np.mean(noisy) - 0.01))
    assert "its defaults stand" in report_tuned.tuned_opening(kept)
    stood = report_tuned.analyse_tuned(_paired_study(better, defaults), spec_dict)
    (row,) = stood.rows
    assert not row.defaults_kept and row.gain == pytest.approx(0.034)
    s = _spec(SMALL.replace('["SGD", "Adam", "Rprop"]', '["Adam"]'))
    (group,) = summary.summarize(s, _paired_study(noisy, defaults))  # the CLI's table agrees
    assert {t.user_attrs["phase"] for t in group.trials} == {"defaults"}


@pytest.mark.slow
def test_tuned_study_with_two_jobs_runs_the_whole_protocol(tmp_path: Path) -> None:
    spec_file = tmp_path / "small.toml"
    spec_file.write_text(
        SMALL.replace("trials_per_optimizer = 4", "trials_per_optimizer = 2").replace(
            "confirm_seeds = 3", "confirm_seeds = 2"
        )
    )
    url = f"sqlite:///{tmp_path / 't.db'}"
    args = ["study", str(spec_file), "--data", "digits", "--storage", url, "--jobs", "2"]
    w = start([*args, "--cache-dir", str(tmp_path / "cache")], tmp_path / "t.log", env_for(url))
    assert wait_exit([w], timeout=600) == [0], w.output()
    ts = trials(url, "small")
    assert len(ts) == 3 * (2 + 2 * 2) and all(t.state == TrialState.COMPLETE for t in ts)
    assert len({t.user_attrs["worker"] for t in ts}) == 2
    by_repeat: dict[int, set[int]] = {}
    for t in ts:
        if t.user_attrs["phase"] in ("confirm", "defaults"):
            by_repeat.setdefault(t.user_attrs["repeat"], set()).add(t.user_attrs["seed"])
    assert sorted(by_repeat) == [0, 1]
    assert all(len(seeds) == 1 for seeds in by_repeat.values()), "paired seeds across optimizers"
    assert len({t.user_attrs["precision"] for t in ts}) == 1
    out = w.output()
    assert "what tuning bought, paired by seed" in out and "Traceback" not in out
