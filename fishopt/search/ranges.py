"""The tuned protocol's ranges: each one centred on torch's default, on the scale it is searched on.

A range that does not contain an optimizer's defaults can end below them: the tuned arm then
measures the search, not the optimizer (Choi et al. 2019). So every range here is built from
torch's default for that setting (read from the optimizer class's signature, so it follows torch
releases) by one rule per setting, ``RULES``, and the default sits in the middle of the range on
its search scale:

- ``log``: the range is default x 10^-w .. default x 10^w, drawn log-uniformly (lr, eps, ...);
- ``log1m``: for settings that crowd near 1 (beta1, beta2, rho, RMSprop's alpha, momentum),
  1 - value is drawn log-uniformly from (1 - default) x 10^-w .. x 10^w: beta2 0.99 .. 0.9999
  around 0.999. The trial parameter keeps its name and value (``beta2 = 0.999``); only the
  sampler works on log(1 - value) (``on_search_scale``), so the dashboard, the report and the
  confirm runs read the setting as torch takes it;
- ``linear``: default -/+ w, for factors bounded near 1 (Rprop's etas, ASGD's power alpha).

Settings whose torch default is 0 (SGD's and RMSprop's momentum, weight decay but AdamW's) have
no centre on a log scale. Momentum is drawn on log(1 - m) from 1 - m in 0.01 .. 1, so m = 0
(torch's default) is the range's end and m = 0.9 its centre; weight decay is drawn log-uniformly
around ``Rule.centre`` and left out of the defaults trial, which then runs torch's 0. Either way
the first search trial of every optimizer is exactly torch's defaults (``search.tuned.plan``).

Each range is stored in the study spec as ``{low, high, log, scale, default}``; ``low``/``high``
are the setting's own values, ``log`` says how Optuna's distribution is recorded (log for
``log``, linear for the others). Ranges recorded before ``scale`` existed read as ``log`` or
``linear`` from their ``log`` flag.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from optuna.distributions import BaseDistribution, FloatDistribution
from optuna.trial import FrozenTrial

LOG, LOG1M, LINEAR = "log", "log1m", "linear"


@dataclass(frozen=True)
class Rule:
    """How a setting's range is drawn around torch's default, and why."""

    scale: str  # log | log1m | linear
    width: float  # half-width: decades for log and log1m, the setting's units for linear
    why: str
    centre: float | None = None  # only for a zero default, which has no centre on its scale


LR = Rule(LOG, 2, "step sizes act on a ratio scale; 100x either way covers the usual tuning range")
EPS = Rule(
    LOG,
    3,
    "far below the default it stops mattering (eps << sqrt(v)); above it the update leans "
    "toward momentum SGD, which Choi et al. (2019) found can help",
)
NEAR_ONE = Rule(LOG1M, 1, "an average's memory is 1 / (1 - beta): 10x shorter to 10x longer")
MOMENTUM = Rule(
    LOG1M,
    1,
    "torch's default 0 (no momentum) is the range's end (1 - m = 1), run by the first trial; "
    "the range centres on the usual 0.9",
    centre=0.9,
)
WEIGHT_DECAY = Rule(
    LOG,
    2,
    "a zero default has no centre on a log scale: the first trial runs torch's 0, the search "
    "draws around 1e-4",
    centre=1e-4,
)
# (optimizer, setting) first, then the setting for any optimizer.
RULES: dict[tuple[str, str] | str, Rule] = {
    "lr": LR,
    ("SGD", "lr"): Rule(
        LOG,
        3,
        "torch's SGD default 1e-3 sits far below the rates plain SGD trains an MLP with in a "
        "few epochs (0.01 to 1); 1000x either way reaches 1 and stays centred",
    ),
    "eps": EPS,
    "beta1": NEAR_ONE,
    "beta2": NEAR_ONE,
    "rho": NEAR_ONE,
    ("RMSprop", "alpha"): NEAR_ONE,
    "momentum": MOMENTUM,
    "lambd": Rule(LOG, 2, "a decay rate: a ratio scale, as lr"),
    ("ASGD", "alpha"): Rule(LINEAR, 0.25, "the power of ASGD's step decay, between 0.5 and 1"),
    "eta_minus": Rule(LINEAR, 0.25, "a shrink factor, bounded by 0 and 1"),
    "eta_plus": Rule(LINEAR, 0.15, "a growth factor just above 1"),
    "weight_decay": WEIGHT_DECAY,
}
ADAM = ("lr", "beta1", "beta2", "eps")
# What the protocol tunes per optimizer; everything else keeps torch's default. ASGD's t0
# (default 1e6: the step at which averaging starts) is left out: no range centred on it reaches
# the few thousand steps a fishopt study trains, so every value in it would train alike.
SETTINGS: dict[str, tuple[str, ...]] = {
    "SGD": ("lr", "momentum"),
    "Adam": ADAM,
    "AdamW": ADAM,
    "Adamax": ADAM,
    "NAdam": ADAM,
    "RAdam": ADAM,
    "Adagrad": ("lr", "eps"),
    "Adadelta": ("lr", "rho", "eps"),
    "RMSprop": ("lr", "alpha", "momentum", "eps"),
    "Rprop": ("lr", "eta_minus", "eta_plus"),
    "ASGD": ("lr", "lambd", "alpha"),
}
NO_WEIGHT_DECAY = ("Rprop",)  # torch's Rprop takes none


def rule(optimizer: str, setting: str) -> Rule:
    return RULES.get((optimizer, setting)) or RULES[setting]


def _nice(x: float) -> float:
    """12 significant digits: 1e-3 / 100 is 1e-05, not 1.0000000000000001e-05."""
    return float(f"{x:.12g}")


def make_range(default: float, r: Rule) -> dict[str, Any]:
    """The stored range of one setting with torch default ``default`` under rule ``r``."""
    centre = default if default != 0 or r.centre is None else r.centre
    if r.scale == LOG:
        low, high = centre / 10**r.width, centre * 10**r.width
    elif r.scale == LOG1M:
        gap = _nice(1 - centre)
        low, high = 1 - min(1.0, _nice(gap * 10**r.width)), 1 - gap / 10**r.width
    else:
        low, high = centre - r.width, centre + r.width
    return {
        "low": _nice(low),
        "high": _nice(high),
        "log": r.scale == LOG,
        "scale": r.scale,
        "default": default,
    }


def space_for(optimizer: str, weight_decay: bool) -> dict[str, dict[str, Any]]:
    """One optimizer's search space: every setting it tunes, centred on torch's default."""
    from fishopt.training.optim import torch_default  # torch: only when a spec is parsed

    names = list(SETTINGS[optimizer])
    if weight_decay and optimizer not in NO_WEIGHT_DECAY:
        names.append("weight_decay")
    return {n: make_range(torch_default(optimizer, n), rule(optimizer, n)) for n in names}


# ----------------------------------------------------------------------- reading a range


def scale_of(entry: Mapping[str, Any]) -> str:
    return str(entry.get("scale") or (LOG if entry.get("log") else LINEAR))


def contains_default(entry: Mapping[str, Any]) -> bool:
    """Whether the range holds torch's default, so a trial can run it as a parameter value
    (a zero default on a log range cannot; the defaults trial leaves it out instead)."""
    d = entry.get("default")
    return d is not None and float(entry["low"]) <= float(d) <= float(entry["high"])


def position(value: float, entry: Mapping[str, Any]) -> float:
    """Where ``value`` lies in the range on its search scale: 0 at ``low``, 1 at ``high``."""
    lo, hi, v = float(entry["low"]), float(entry["high"]), float(value)
    scale = scale_of(entry)
    if scale == LOG:
        if v <= 0:
            return -math.inf
        return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
    if scale == LOG1M:
        if v >= 1:
            return math.inf
        return (math.log(1 - lo) - math.log(1 - v)) / (math.log(1 - lo) - math.log(1 - hi))
    return (v - lo) / (hi - lo)


def show(v: float) -> str:
    """3 significant digits, but 2 of 1 - v for values crowding near 1 (beta2 = 0.99961, not
    1), since those settings are searched on 1 - v."""
    if 0.9 < v < 1:
        nines = -math.floor(math.log10(1 - v)) - 1
        return f"{v:.{max(3, nines + 2)}g}"
    return f"{v:.3g}"


def at_limit(entry: Mapping[str, Any], end: str) -> bool:
    """Whether the range's ``end`` ("low"/"high") is as far as the setting can go, so a best
    value there asks for no wider range: 0 for momentum, beta1, rho (1 - value = 1)."""
    return end == "low" and scale_of(entry) == LOG1M and float(entry["low"]) == 0


def describe(entry: Mapping[str, Any], name: str) -> str:
    """``0.99..0.9999 (log scale of 1 - beta2)`` and the like, for warnings and README."""
    lo, hi = float(entry["low"]), float(entry["high"])
    scale = {LOG: " (log scale)", LOG1M: f" (log scale of 1 - {name})"}.get(scale_of(entry), "")
    return f"{lo:g}..{hi:g}{scale}"


# --------------------------------------------------------- what a sampler sees: search scales


def flipped(names: Iterable[str], spaces: Mapping[str, Mapping[str, Any]]) -> frozenset[str]:
    """The settings among ``names`` searched on log(1 - value)."""
    return frozenset(n for n in names if n in spaces and scale_of(spaces[n]) == LOG1M)


def to_search(dist: BaseDistribution) -> FloatDistribution:
    """A stored (linear) distribution of a log1m setting as the sampler draws it: 1 - value,
    log-uniform."""
    assert isinstance(dist, FloatDistribution)
    return FloatDistribution(1.0 - dist.high, 1.0 - dist.low, log=True)


def from_search(dist: BaseDistribution) -> FloatDistribution:
    assert isinstance(dist, FloatDistribution)
    return FloatDistribution(1.0 - dist.high, 1.0 - dist.low, log=False)


def value_from_search(gap: float, dist: BaseDistribution) -> float:
    """The setting's value for a drawn 1 - value, kept inside the stored range (1 - (1 - x)
    may round past an end)."""
    assert isinstance(dist, FloatDistribution)
    return min(max(1.0 - float(gap), dist.low), dist.high)


def on_search_scale(t: FrozenTrial, names: frozenset[str]) -> FrozenTrial:
    """The trial as a sampler should learn from it: log1m settings as 1 - value (a copy)."""
    hit = [n for n in names if n in t.distributions]
    if not hit:
        return t
    params, dists = dict(t.params), dict(t.distributions)
    for n in hit:
        params[n] = 1.0 - float(params[n])
        dists[n] = to_search(dists[n])
    out = copy.copy(t)
    out.params, out.distributions = params, dists
    return out
