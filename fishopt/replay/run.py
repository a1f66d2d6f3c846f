"""Searches replayed on a table: real Optuna samplers and pruners, curves read instead of trained.

Each replay is one search, as ``fishopt study`` would run it: a fresh study on Optuna's
InMemoryStorage with the arm's sampler and pruner, built by fishopt's own ``make_sampler`` and
``make_pruner`` from the arm's ``[sampler]`` and ``[pruner]`` tables. A trial asks its
parameters through the table's distributions, reads the curve of that configuration for a seed
the configuration has not used yet in this search (a real search derives a fresh seed for each
trial; the table has only its few), reports it epoch by epoch and is pruned or completed as
Optuna decides. Nothing is trained, so hundreds of searches take seconds.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing as mp
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import optuna
from optuna.trial import TrialState

from fishopt.replay.table import Table
from fishopt.search import samplers
from fishopt.search.spec import StudySpec


@dataclass(frozen=True)
class Arm:
    """A way to search: a spec's ``[sampler]`` and ``[pruner]`` tables, and its ``repeats``
    (a completed configuration is run again with other seeds and declared by its mean)."""

    name: str
    sampler: dict
    pruner: dict = field(default_factory=lambda: {"name": "none"})
    repeats: int = 1

    def describe(self) -> str:
        def table(d: dict) -> str:
            opts = ", ".join(f"{k} {v}" for k, v in d.items() if k != "name")
            return d["name"] + (f" ({opts})" if opts else "")

        pruned = "" if self.pruner["name"] == "none" else f" + {table(self.pruner)}"
        again = f", each completed configuration run {self.repeats}x" if self.repeats > 1 else ""
        return f"{table(self.sampler)}{pruned}{again}"


@dataclass(frozen=True)
class Replay:
    """One replayed search, trial by trial."""

    epochs: np.ndarray  # epochs trained so far, after each trial
    declared: np.ndarray  # the configuration the search declares best after each trial (-1: none)
    pruned: int  # trials pruned


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Optuna's per-trial log lines and its experimental-feature warnings, silenced."""
    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


def _study(table: Table, arm: Arm, seed: int) -> optuna.Study:
    spec = replace(
        StudySpec.from_dict(table.spec), sampler=arm.sampler, pruner=arm.pruner, seed=seed
    )
    grid = arm.sampler["name"] == "grid"
    study = optuna.create_study(
        storage=optuna.storages.InMemoryStorage(),
        # Hyperband assigns brackets by a hash of the study name: a fixed name makes a replay
        # a pure function of its seed.
        study_name=f"replay-{arm.name}-{seed}",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed)
        if grid
        else samplers.make_sampler(spec, distributed=False),
        pruner=samplers.make_pruner(spec),
    )
    if grid:
        # A grid: every distinct configuration once, in a random order, as fishopt's grid
        # sampler runs it (points that train the same network count once).
        order = np.random.default_rng([seed, 0x6D1D]).permutation(table.n_configs)
        for config in order:
            study.enqueue_trial(table.params_of(int(config)))
    return study


class _Declared:
    """The configuration a search declares best, as fishopt would report it: the best single
    trial; with repeats, the best mean among configurations run ``repeats`` times (or among
    all, before any is)."""

    def __init__(self, repeats: int):
        self.repeats = repeats
        self.values: dict[int, list[float]] = {}
        self.best = (-math.inf, -1)

    def add(self, config: int, value: float) -> None:
        self.values.setdefault(config, []).append(value)
        if value > self.best[0]:
            self.best = (value, config)

    def now(self) -> int:
        if self.repeats <= 1:
            return self.best[1]
        checked = {c: v for c, v in self.values.items() if len(v) >= self.repeats}
        pool = checked or self.values
        if not pool:
            return -1
        return max(pool, key=lambda c: sum(pool[c]) / len(pool[c]))


def replay(
    table: Table, arm: Arm, seed: int, max_trials: int, max_epochs: int | None = None
) -> Replay:
    """One search of ``max_trials`` trials (fewer once ``max_epochs`` are spent)."""
    study = _study(table, arm, seed)
    dists = table.distributions()
    prunes = arm.pruner["name"] != "none"
    rng = np.random.default_rng([seed, 0x5EED])  # the seeds' stream, apart from the sampler's
    orders: dict[int, np.ndarray] = {}
    used: dict[int, int] = {}
    declared = _Declared(arm.repeats)
    spent, pruned = 0, 0
    epochs_after: list[int] = []
    declared_after: list[int] = []
    for _ in range(max_trials):
        trial = study.ask(dists)
        config = table.config_of(trial.params)
        if config not in orders:
            orders[config] = rng.permutation(table.n_seeds)
        k = used.get(config, 0)
        used[config] = k + 1
        s = int(orders[config][k]) if k < table.n_seeds else int(rng.integers(table.n_seeds))
        curve = table.curves[config, s]
        # A re-run of a completed configuration trains to the end, as in the objective.
        rerun = "repeat_of" in trial.user_attrs
        best, ran, stopped = -math.inf, 0, False
        for epoch, v in enumerate(curve, 1):
            if math.isnan(v):  # the trial diverged and stopped here
                break
            ran, best = epoch, max(best, float(v))
            trial.report(float(v), epoch)
            if prunes and not rerun and trial.should_prune():
                stopped = True
                break
        spent += ran
        if stopped:
            pruned += 1
            study.tell(trial, state=TrialState.PRUNED)
        else:
            study.tell(trial, best)
            declared.add(config, best)
            if arm.repeats > 1 and not rerun:
                for _r in range(1, arm.repeats):
                    study.enqueue_trial(trial.params, user_attrs={"repeat_of": trial.number})
        epochs_after.append(spent)
        declared_after.append(declared.now())
        if max_epochs is not None and spent >= max_epochs:
            break
    return Replay(np.array(epochs_after), np.array(declared_after), pruned)


@dataclass(frozen=True)
class Job:
    """Replays of one arm on one table: seeds ``first .. first + count - 1``."""

    table: Table
    arm: Arm
    first: int
    count: int
    max_trials: int
    max_epochs: int | None = None


def _run(job: Job) -> list[Replay]:
    with quiet():
        return [
            replay(job.table, job.arm, job.first + i, job.max_trials, job.max_epochs)
            for i in range(job.count)
        ]


SMALL = 5000  # trials in all: below this, starting processes costs more than it saves


def run(jobs: Sequence[Job], processes: int = 1) -> list[list[Replay]]:
    """Every job's replays, in job order; ``processes`` > 1 spreads them over that many
    processes (jobs are best split into chunks of a few dozen replays for that), unless the
    work is too small to pay for starting them."""
    work = sum(j.count * j.max_trials for j in jobs)
    if processes <= 1 or len(jobs) <= 1 or work < SMALL:
        return [_run(j) for j in jobs]
    with mp.get_context("spawn").Pool(processes) as pool:
        # get() with a timeout, unlike map(), lets Ctrl-C through to stop the pool.
        return pool.map_async(_run, jobs, chunksize=1).get(timeout=7 * 24 * 3600)


def replays(
    table: Table,
    arms: Sequence[Arm],
    count: int,
    max_trials: int | dict[str, int],
    *,
    max_epochs: int | None = None,
    processes: int = 1,
    chunk: int = 25,
) -> dict[str, list[Replay]]:
    """``count`` replays of each arm (seeds 0 .. count - 1), by arm name.

    ``max_trials`` may differ per arm (a grid stops at its number of points).
    """
    jobs = []
    for arm in arms:
        cap = max_trials[arm.name] if isinstance(max_trials, dict) else max_trials
        jobs += [
            Job(table, arm, first, min(chunk, count - first), cap, max_epochs)
            for first in range(0, count, chunk)
        ]
    results = run(jobs, processes)
    out: dict[str, list[Replay]] = {a.name: [] for a in arms}
    for job, result in zip(jobs, results, strict=True):
        out[job.arm.name] += result
    return out
