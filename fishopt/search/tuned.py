"""The tuned optimizer protocol: every optimizer searched on its own, then confirmed with seeds.

Comparing optimizers at torch's default settings ranks the defaults, not the optimizers (Choi et
al. 2019). Here each optimizer gets its own search space (learning rate on a log range for all;
momentum, betas, epsilon on a log range reaching large values, and the like where it has them),
the same budget of ``trials_per_optimizer`` search trials, searched by its own sampler state, so
no optimizer steals trials or knowledge from another. Once an optimizer's search trials are all
finished, its best setting is re-run with ``confirm_seeds`` seeds (DeepOBS, Schmidt et al. 2021);
the r-th confirm run of every optimizer uses the same seed, a paired design. Both phases are
ordinary trials of one study, so workers share them and a study resumes like any other.

Trials carry a user attribute ``phase`` (``search`` or ``confirm``); confirm trials also carry
``confirm_of`` (the search trial they re-run) and ``repeat``.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.samplers import BaseSampler
from optuna.trial import FrozenTrial, TrialState

from fishopt.search.studies import FINISHED, best_completed
from fishopt.storage import fence

KIND = "optimizers-tuned"
SEARCH, CONFIRM = "search", "confirm"
LR = {"low": 1e-5, "high": 1.0, "log": True}
EPS = {"low": 1e-10, "high": 1.0, "log": True}  # up to large values: Choi et al.'s finding
BETA1 = {"low": 0.5, "high": 0.99, "log": False}
BETA2 = {"low": 0.9, "high": 0.9999, "log": False}
MOMENTUM = {"low": 0.0, "high": 0.99, "log": False}
# Each optimizer's own search space (ranges as in the spec's {low, high, log}); anything not
# listed keeps torch's default.
SPACES: dict[str, dict[str, dict[str, Any]]] = {
    "SGD": {"lr": {"low": 1e-4, "high": 1.0, "log": True}, "momentum": MOMENTUM},
    "Adam": {"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS},
    "AdamW": {"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS},
    "Adamax": {"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS},
    "NAdam": {"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS},
    "RAdam": {"lr": LR, "beta1": BETA1, "beta2": BETA2, "eps": EPS},
    "Adagrad": {"lr": {"low": 1e-4, "high": 1.0, "log": True}, "eps": EPS},
    "Adadelta": {
        "lr": {"low": 1e-2, "high": 10.0, "log": True},
        "rho": {"low": 0.8, "high": 0.999, "log": False},
        "eps": {"low": 1e-8, "high": 1e-2, "log": True},
    },
    "RMSprop": {
        "lr": LR,
        "alpha": {"low": 0.8, "high": 0.999, "log": False},
        "momentum": MOMENTUM,
        "eps": EPS,
    },
    "Rprop": {
        "lr": LR,
        "eta_minus": {"low": 0.1, "high": 0.9, "log": False},
        "eta_plus": {"low": 1.05, "high": 2.0, "log": False},
    },
    "ASGD": {
        "lr": {"low": 1e-4, "high": 1.0, "log": True},
        "lambd": {"low": 1e-6, "high": 1e-2, "log": True},
        "alpha": {"low": 0.5, "high": 1.0, "log": False},
        "t0": {"low": 1e2, "high": 1e6, "log": True},
    },
}
WEIGHT_DECAY = {"low": 1e-6, "high": 1e-1, "log": True}
NO_WEIGHT_DECAY = ("Rprop",)  # torch's Rprop takes none


def spaces(optimizers: Sequence[str], weight_decay: bool) -> dict[str, dict[str, dict]]:
    """The search space of each optimizer, with weight decay where the spec asks for it."""
    out = {}
    for name in optimizers:
        space = {k: dict(v) for k, v in SPACES[name].items()}
        if weight_decay and name not in NO_WEIGHT_DECAY:
            space["weight_decay"] = dict(WEIGHT_DECAY)
        out[name] = space
    return out


def budget(tuned: dict) -> int:
    """Search plus confirm trials, for every optimizer."""
    per = int(tuned["trials_per_optimizer"]) + int(tuned["confirm_seeds"])
    return len(tuned["optimizers"]) * per


def confirm_seed(study_seed: int, repeat: int) -> int:
    """The r-th confirm run's seed: the same for every optimizer, so runs pair up by r."""
    digest = hashlib.sha256(f"fishopt/{study_seed}/confirm/{repeat}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def phase_of(t: FrozenTrial) -> str:
    return str(t.user_attrs.get("phase", SEARCH))


def edge_warnings(params: Mapping[str, object], space: Mapping[str, Mapping]) -> list[str]:
    """Parameters whose value sits within 5% of either end of its range (measured on the log
    scale for log ranges): the best may lie outside, so the range should be widened, as Choi
    et al. (2019) did. ``space``: name -> {"low", "high", "log"}; other entries are ignored."""
    out = []
    for name in sorted(space):
        rng = space[name]
        v = params.get(name)
        if not isinstance(rng, Mapping) or not isinstance(v, int | float) or isinstance(v, bool):
            continue
        lo, hi, log = float(rng["low"]), float(rng["high"]), bool(rng.get("log", False))
        if hi <= lo or (log and lo <= 0) or (log and v <= 0):
            continue
        f = (lambda x: math.log(x)) if log else (lambda x: x)
        pos = (f(float(v)) - f(lo)) / (f(hi) - f(lo))
        scale = " (log scale)" if log else ""
        if pos <= 0.05:
            out.append(f"{name} = {v:.3g} is at the low end of its range {lo:g}..{hi:g}{scale}")
        elif pos >= 0.95:
            out.append(f"{name} = {v:.3g} is at the high end of its range {lo:g}..{hi:g}{scale}")
    return out


# ------------------------------------------------------------------------- the spec table

TUNED_KEYS = {"trials_per_optimizer", "confirm_seeds", "optimizers", "weight_decay"}
# Searched per optimizer by the tuned protocol, so a tuned spec may not search them itself.
PER_OPTIMIZER = {"optimizer", "lr", "momentum", "weight_decay"}


def parse_tuned(raw: dict, kind: str, space: dict, sampler: dict, pruner: dict, fail: Any) -> dict:
    """``[tuned]``: only for kind "optimizers-tuned", which always has one (defaults)."""
    from fishopt.training import optim  # torch: only when a spec is parsed

    table = raw.get("tuned")
    if kind != KIND:
        if table is not None:
            raise fail("tuned", f"only a study of kind {KIND!r} takes a [tuned] table")
        return {}
    table = {} if table is None else table
    if not isinstance(table, dict):
        raise fail("tuned", "must be a table")
    unknown = set(table) - TUNED_KEYS
    if unknown:
        raise fail(
            f"tuned.{sorted(unknown)[0]}", f"unknown key; allowed: {', '.join(sorted(TUNED_KEYS))}"
        )
    searched = sorted(PER_OPTIMIZER & set(space))
    if searched:
        raise fail(
            f"space.{searched[0]}",
            "the tuned protocol searches each optimizer's own settings; remove it",
        )
    if sampler["name"] not in ("tpe", "random"):
        raise fail(
            "sampler.name", "the tuned protocol runs one tpe or random sampler per optimizer"
        )
    if pruner["name"] != "none":
        raise fail(
            "pruner.name",
            "the tuned protocol trains every trial to the end; use 'none' "
            "(a pruner would compare across optimizers)",
        )
    if raw.get("repeats", 1) != 1:
        raise fail(
            "repeats",
            "the tuned protocol repeats each optimizer's best setting itself (tuned.confirm_seeds)",
        )

    def whole(key: str, default: int, low: int) -> int:
        value = table.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise fail(f"tuned.{key}", f"must be an integer >= {low}, got {value!r}")
        return value

    names = table.get("optimizers", list(SPACES))
    if not isinstance(names, list) or not names or len(set(names)) != len(names):
        raise fail("tuned.optimizers", f"must be a list of distinct optimizers, got {names!r}")
    for name in names:
        try:
            optim.check_name(name)
        except ValueError as exc:
            raise fail("tuned.optimizers", str(exc)) from None
    weight_decay = table.get("weight_decay", False)
    if not isinstance(weight_decay, bool):
        raise fail("tuned.weight_decay", f"must be true or false, got {weight_decay!r}")
    return {
        "trials_per_optimizer": whole("trials_per_optimizer", 12, 1),
        "confirm_seeds": whole("confirm_seeds", 10, 2),
        "optimizers": list(names),
        "weight_decay": weight_decay,
        "spaces": spaces(names, weight_decay),
    }


# ------------------------------------------------------------------------------- the planner


def plan(study: optuna.Study, tuned: dict, trials: Sequence[FrozenTrial]) -> bool:
    """Queue the next trial of the protocol; False when nothing can start until trials finish.

    Called under the study's claim lock, when no trial is queued: search trials go to the
    optimizer with the fewest so far (FAIL ones do not count: their retries are queued copies);
    an optimizer whose search trials have all finished gets its confirm runs.
    """
    k, r = int(tuned["trials_per_optimizer"]), int(tuned["confirm_seeds"])
    live = [t for t in trials if t.state != TrialState.FAIL]
    for name in tuned["optimizers"]:
        mine = [t for t in live if t.params.get("optimizer") == name]
        searched = [t for t in mine if phase_of(t) == SEARCH]
        confirms = [t for t in mine if phase_of(t) == CONFIRM]
        done = [t for t in searched if t.state in FINISHED]
        if len(done) >= k and not confirms:
            best = best_search(mine, name)
            if best is None:
                continue  # every search trial pruned: nothing to confirm
            for repeat in range(r):
                study.enqueue_trial(
                    best.params,
                    user_attrs={"phase": CONFIRM, "confirm_of": best.number, "repeat": repeat},
                )
            return True
    counts = {
        name: sum(t.params.get("optimizer") == name and phase_of(t) == SEARCH for t in live)
        + sum(
            _queued_optimizer(t) == name
            for t in trials
            if t.state == TrialState.WAITING and phase_of(t) == SEARCH
        )
        for name in tuned["optimizers"]
    }
    name = min(tuned["optimizers"], key=lambda n: counts[n])
    if counts[name] >= k:
        return False
    study.enqueue_trial({"optimizer": name}, user_attrs={"phase": SEARCH})
    return True


def best_search(trials: Iterable[FrozenTrial], optimizer: str) -> FrozenTrial | None:
    """An optimizer's best completed search trial: the setting its confirm runs re-run."""
    return best_completed(
        t for t in trials if t.params.get("optimizer") == optimizer and phase_of(t) == SEARCH
    )


def _queued_optimizer(t: FrozenTrial) -> str | None:
    fixed = t.system_attrs.get("fixed_params") or {}
    return fixed.get("optimizer") if not t.params else None


# ------------------------------------------------------------------ one sampler per optimizer


def _one_optimizer(study: optuna.Study, name: str) -> fence.FilteredStudy:
    """A study as one optimizer's sampler sees it: only that optimizer's search trials."""
    return fence.FilteredStudy(
        study,
        lambda t: (
            phase_of(t) == SEARCH and (t.params.get("optimizer") or _queued_optimizer(t)) == name
        ),
    )


class PerOptimizerSampler(BaseSampler):
    """Delegates each trial to the sampler of its optimizer (fixed when the trial was queued),
    which sees only that optimizer's search trials."""

    def __init__(self, make: Callable[[str], BaseSampler]) -> None:
        self._make = make
        self._samplers: dict[str, BaseSampler] = {}

    def _for(self, study: optuna.Study, trial: FrozenTrial) -> tuple[BaseSampler, Any]:
        name = trial.params.get("optimizer") or _queued_optimizer(trial) or "?"
        if name not in self._samplers:
            self._samplers[name] = self._make(name)
        return self._samplers[name], _one_optimizer(study, name)

    def infer_relative_search_space(
        self, study: optuna.Study, trial: FrozenTrial
    ) -> dict[str, BaseDistribution]:
        sampler, view = self._for(study, trial)
        return sampler.infer_relative_search_space(view, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        sampler, view = self._for(study, trial)
        return sampler.sample_relative(view, trial, search_space)

    def sample_independent(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        param_name: str,
        param_distribution: BaseDistribution,
    ) -> Any:
        sampler, view = self._for(study, trial)
        return sampler.sample_independent(view, trial, param_name, param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        sampler, view = self._for(study, trial)
        sampler.before_trial(view, trial)

    def after_trial(
        self,
        study: optuna.Study,
        trial: FrozenTrial,
        state: TrialState,
        values: Sequence[float] | None,
    ) -> None:
        sampler, view = self._for(study, trial)
        sampler.after_trial(view, trial, state, values)

    def reseed_rng(self) -> None:
        for sampler in self._samplers.values():
            sampler.reseed_rng()
