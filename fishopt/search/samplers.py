"""Sampler and pruner from a study spec: the only place that builds either."""

from __future__ import annotations

import optuna

from fishopt.search import space
from fishopt.search.spec import StudySpec
from fishopt.storage import fence


class RequeueSafeGridSampler(optuna.samplers.GridSampler):
    """GridSampler that accepts re-queued trials (an interrupted grid point run again).

    Optuna's GridSampler.after_trial reads a ``grid_id`` that enqueued trials never get, and
    fails with KeyError once a single grid point is left; such a trial visits no new point, so
    only the study-exhausted check applies to it. Given the ``spec``, points that would train
    the same network as an earlier point are dropped (studies made before this keep the full
    grid, whose point numbers they recorded).
    """

    def __init__(self, search_space: dict, seed: int | None = None, spec: StudySpec | None = None):
        super().__init__(search_space, seed)
        if spec is not None:  # drop points that train the same network as an earlier one
            seen: set = set()
            kept = []
            for point in self._all_grids:
                key = space.network_key(dict(zip(self._param_names, point, strict=True)), spec)
                if key not in seen:
                    seen.add(key)
                    kept.append(point)
            self._all_grids = kept
            self._n_min_trials = len(kept)

    def after_trial(self, study, trial, state, values) -> None:  # type: ignore[no-untyped-def]
        if "grid_id" in fence.storage_of(study).get_trial_system_attrs(fence.trial_id(trial)):
            super().after_trial(study, trial, state, values)
        elif not self._get_unvisited_grid_ids(study):
            study.stop()


def make_sampler(
    spec: StudySpec, distributed: bool = False, distinct_grid: bool = True
) -> optuna.samplers.BaseSampler:
    opts = {k: v for k, v in spec.sampler.items() if k != "name"}
    name = spec.sampler["name"]
    # Workers sharing a study must not draw the same sequence (each trial stays exact: its
    # training seed comes from its number). TPE's constant liar (on by default) already spreads
    # parallel workers apart.
    seed = None if distributed and name != "grid" else spec.seed
    if spec.tuned:
        from fishopt.search.tuned import PerOptimizerSampler

        def one(optimizer: str) -> optuna.samplers.BaseSampler:
            # Each optimizer's own stream, reproducible from the study seed.
            own = None if seed is None else (seed * 1_000_003 + sum(map(ord, optimizer))) % 2**31
            return _plain(name, opts, own)

        return PerOptimizerSampler(one, spec.tuned.get("spaces", {}))
    return _plain(name, opts, seed, spec, distinct_grid)


def _plain(
    name: str, opts: dict, seed: int | None, spec: StudySpec | None = None, distinct: bool = True
) -> optuna.samplers.BaseSampler:
    if name == "grid":
        assert spec is not None
        return RequeueSafeGridSampler(space.grid(spec), seed=seed, spec=spec if distinct else None)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # CMA-ES handles only numeric parameters; categoricals fall back to random sampling.
        return optuna.samplers.CmaEsSampler(
            seed=seed, n_startup_trials=int(opts.get("n_startup_trials", 1))
        )
    if name == "gp":
        return optuna.samplers.GPSampler(
            seed=seed, n_startup_trials=int(opts.get("n_startup_trials", 10))
        )
    return optuna.samplers.TPESampler(
        seed=seed,
        multivariate=True,
        group=True,
        n_startup_trials=int(opts.get("n_startup_trials", 10)),
    )


def make_pruner(spec: StudySpec) -> optuna.pruners.BasePruner:
    opts = {k: v for k, v in spec.pruner.items() if k != "name"}
    name = spec.pruner["name"]
    if name == "none":
        return optuna.pruners.NopPruner()
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=int(opts.get("min_resource", 1)),
            max_resource=spec.epochs,
            reduction_factor=int(opts.get("reduction_factor", 3)),
        )
    if name == "successive-halving":
        return optuna.pruners.SuccessiveHalvingPruner(
            min_resource=int(opts.get("min_resource", 1)),
            reduction_factor=int(opts.get("reduction_factor", 3)),
        )
    return optuna.pruners.MedianPruner(
        n_startup_trials=int(opts.get("n_startup_trials", 5)),
        n_warmup_steps=int(opts.get("n_warmup_steps", 3)),
    )
