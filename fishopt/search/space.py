"""The only module that calls ``trial.suggest_*``: a study spec plus a trial -> a trial config.

Parameter names are stable, as in Optuna's PyTorch example, so studies, reports and the
dashboard agree: ``optimizer``, ``lr``, ``weight_decay``, ``momentum``, ``n_layers``,
``width_pattern``, ``n_units_l0`` (first hidden width), ``n_units_l{i}`` (further widths when the
pattern is ``free``), ``width_ratio`` (for ``decreasing``), ``dropout``, ``batch_norm``,
``batch_size`` and, for grid studies with repeats, ``repeat``.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

import optuna

from fishopt.search import ranges
from fishopt.search.spec import DEFAULT_FIXED, Range, StudySpec
from fishopt.training.model import MLPSpec
from fishopt.training.optim import OptimSpec

# Spec names whose trial parameter is named differently.
PARAM_NAME = {"units": "n_units_l0"}


@dataclass(frozen=True)
class TrialConfig:
    """What one trial trains: plain data, no Optuna inside."""

    optim: OptimSpec
    hidden: tuple[int, ...]
    dropout: float
    batch_norm: bool
    batch_size: int
    repeat: int | None = None  # the grid's repeat index; None when repeats are queued instead

    def mlp(self, in_features: int, n_classes: int) -> MLPSpec:
        """The network this trial trains, for data of this shape."""
        return MLPSpec(in_features, self.hidden, n_classes, self.dropout, self.batch_norm)


def widths(
    first: int, n_layers: int, pattern: str, ratio: float, free: list[int] | None = None
) -> tuple[int, ...]:
    """Hidden widths from the pattern: the seed's experiments 2 (constant) and 3 (decreasing)."""
    if n_layers == 0:
        return ()
    if pattern == "constant":
        return (first,) * n_layers
    if pattern == "decreasing":
        return tuple(max(1, round(first * ratio**i)) for i in range(n_layers))
    assert free is not None and len(free) == n_layers - 1
    return (first, *free)


def _suggest(trial: optuna.Trial, spec: StudySpec, key: str, name: str | None = None) -> Any:
    """The value of ``key``: sampled if the spec searches it, else fixed, else the default."""
    name = name or PARAM_NAME.get(key, key)
    dom = spec.space.get(key)
    if dom is None:
        return spec.fixed.get(key, DEFAULT_FIXED.get(key))
    if isinstance(dom, Range):
        if (
            isinstance(dom.low, int)
            and isinstance(dom.high, int)
            and key in ("n_layers", "units", "batch_size")
        ):
            return trial.suggest_int(
                name, int(dom.low), int(dom.high), log=dom.log, step=dom.step or 1
            )
        return trial.suggest_float(name, float(dom.low), float(dom.high), log=dom.log)
    if len(dom) == 1:
        return dom[0]
    return trial.suggest_categorical(name, list(dom))


def _suggest_range(trial: optuna.Trial, name: str, r: dict) -> float:
    return trial.suggest_float(name, float(r["low"]), float(r["high"]), log=bool(r["log"]))


def suggest_tuned(trial: optuna.Trial, tuned: dict) -> OptimSpec:
    """The tuned protocol: the optimizer was fixed when the trial was queued; its own
    hyperparameters come from its own space (``search.tuned``)."""
    optimizer = trial.suggest_categorical("optimizer", list(tuned["optimizers"]))
    space = tuned["spaces"][optimizer]
    # At torch's defaults (the first search trial, the defaults runs) a zero default that its
    # log range cannot hold is left out, so torch's own 0 applies (``search.ranges``).
    outside = {k for k, r in space.items() if "default" in r and not ranges.contains_default(r)}
    if outside and trial.user_attrs.get("at_defaults"):
        space = {k: r for k, r in space.items() if k not in outside}
    values = {k: _suggest_range(trial, k, r) for k, r in space.items()}
    return OptimSpec(
        name=str(optimizer),
        lr=values.pop("lr", None),
        weight_decay=values.pop("weight_decay", None),
        momentum=values.pop("momentum", None),
        options=tuple(sorted(values.items())),
    )


def suggest(trial: optuna.Trial, spec: StudySpec) -> TrialConfig:
    if spec.tuned:
        optim_spec = suggest_tuned(trial, spec.tuned)
    else:
        optim_spec = OptimSpec(
            name=_suggest(trial, spec, "optimizer"),
            lr=_suggest(trial, spec, "lr"),
            weight_decay=_suggest(trial, spec, "weight_decay"),
            momentum=_suggest(trial, spec, "momentum"),
        )
    if "hidden" in spec.fixed:
        hidden = tuple(spec.fixed["hidden"])
    else:
        n_layers = int(_suggest(trial, spec, "n_layers"))
        hidden = ()
        if n_layers > 0:
            pattern = _suggest(trial, spec, "width_pattern") if n_layers > 1 else "constant"
            first = int(_suggest(trial, spec, "units"))
            ratio = float(_suggest(trial, spec, "width_ratio")) if pattern == "decreasing" else 1
            free = (
                [int(_suggest(trial, spec, "units", f"n_units_l{i}")) for i in range(1, n_layers)]
                if pattern == "free"
                else None
            )
            hidden = widths(first, n_layers, pattern, ratio, free)
    dropout = float(_suggest(trial, spec, "dropout"))
    repeat = None
    if spec.sampler["name"] == "grid" and spec.repeats > 1:
        repeat = int(trial.suggest_categorical("repeat", list(range(spec.repeats))))
    return TrialConfig(
        optim=optim_spec,
        hidden=hidden,
        dropout=dropout,
        batch_norm=bool(_suggest(trial, spec, "batch_norm")),
        batch_size=int(_suggest(trial, spec, "batch_size")),
        repeat=repeat,
    )


def grid(spec: StudySpec) -> dict[str, list]:
    """The GridSampler search space: every list in the spec, plus ``repeat`` for repeats > 1."""
    space: dict[str, list] = {}
    for key, dom in spec.space.items():
        assert not isinstance(dom, Range), "validated in spec.parse"
        if len(dom) > 1:
            space[PARAM_NAME.get(key, key)] = list(dom)
    pattern = spec.space.get("width_pattern", (spec.fixed.get("width_pattern"),))
    if "free" in pattern and "units" in spec.space:
        n_layers = int(spec.fixed.get("n_layers", DEFAULT_FIXED["n_layers"]))
        for i in range(1, n_layers):
            space[f"n_units_l{i}"] = list(spec.space["units"])
    if spec.repeats > 1:
        space["repeat"] = list(range(spec.repeats))
    return space


def grid_size(spec: StudySpec, distinct: bool = True) -> int:
    """Grid points; ``distinct`` counts points that train the same network once."""
    space = grid(spec)
    if not space:
        return 1
    names = sorted(space)
    points = [
        dict(zip(names, p, strict=True)) for p in itertools.product(*(space[n] for n in names))
    ]
    return len({network_key(p, spec) for p in points}) if distinct else len(points)


def network_key(params: dict, spec: StudySpec) -> TrialConfig:
    """What a set of parameters trains: two grid points with the same key are the same trial
    (one layer is "constant" and "decreasing" alike)."""
    return suggest(optuna.trial.FixedTrial(params), spec)  # type: ignore[arg-type]


def config_key(params: dict) -> str:
    """Identifies a configuration across its repeats (params without ``repeat``)."""
    core = {k: v for k, v in params.items() if k != "repeat"}
    return hashlib.sha256(json.dumps(core, sort_keys=True, default=str).encode()).hexdigest()[:10]
