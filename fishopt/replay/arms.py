"""The ways to search that replays compare, named, and the one the ``full`` study uses.

Each arm is what a study file's ``[sampler]`` and ``[pruner]`` tables would say, so a replayed
arm is exactly what ``fishopt study`` would run. TPE starts with 10 random trials and the median
pruner waits for 5 trials and 3 epochs, as in ``studies/full.toml``; successive halving and
Hyperband start at 1 epoch and keep a third at each rung (Optuna's defaults).
"""

from __future__ import annotations

from fishopt.replay.run import Arm
from fishopt.search import spec as specs

TPE = {"name": "tpe", "n_startup_trials": 10}
MEDIAN = {"name": "median", "n_startup_trials": 5, "n_warmup_steps": 3}
HALVING = {"name": "successive-halving", "min_resource": 1, "reduction_factor": 3}
HYPERBAND = {"name": "hyperband", "min_resource": 1, "reduction_factor": 3}

ARMS: dict[str, Arm] = {
    a.name: a
    for a in (
        Arm("random", {"name": "random"}),
        Arm("grid", {"name": "grid"}),
        Arm("tpe", TPE),
        Arm("tpe+median", TPE, MEDIAN),
        Arm("tpe+halving", TPE, HALVING),
        Arm("tpe+hyperband", TPE, HYPERBAND),
        Arm("random+hyperband", {"name": "random"}, HYPERBAND),
        Arm("cmaes+median", {"name": "cmaes", "n_startup_trials": 1}, MEDIAN),
        Arm("gp", {"name": "gp", "n_startup_trials": 10}),
    )
}

SAMPLER_WORDS = {"tpe": "TPE", "random": "random", "grid": "grid", "cmaes": "CMA-ES", "gp": "GP"}
PRUNER_WORDS = {
    "median": "median pruning",
    "successive-halving": "successive halving",
    "hyperband": "Hyperband",
}


def full_trials() -> int:
    """The trial budget ``studies/full.toml`` ships with."""
    return specs.load("full").n_trials or 0


def full_default() -> Arm:
    """The sampler and pruner ``studies/full.toml`` ships with, as an arm."""
    spec = specs.load("full")
    for arm in ARMS.values():
        if arm.sampler == spec.sampler and arm.pruner == spec.pruner:
            return arm
    return Arm("full", dict(spec.sampler), dict(spec.pruner))


def in_words(arm: Arm, trials: int) -> str:
    """ "20 TPE trials and median pruning", for a sentence."""
    sampler = SAMPLER_WORDS.get(arm.sampler["name"], arm.sampler["name"])
    pruner = PRUNER_WORDS.get(arm.pruner["name"])
    return f"{trials} {sampler} trials" + (f" and {pruner}" if pruner else "")


def available(arm: Arm) -> str | None:
    """Why an arm cannot run here (a missing optional package), or None."""
    if arm.sampler["name"] == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            return "CMA-ES needs the cmaes package (pip install cmaes)"
    return None
