"""A finished grid study as a table: configuration -> per-seed, per-epoch validation curves.

A grid study with repeats has trained every configuration of its space with several seeds and
recorded each epoch's validation macro-F1 (the trial's intermediate values). That is a tabular
benchmark in the sense of NAS-Bench-201 or LCBench: any search over the same space can be
replayed on it, without training, by reading the curve of the configuration it asks for.

The table keeps the grid's axes (the trial parameters, without ``repeat``), one curve per
(configuration, seed) and how it was made. It is written as gzipped JSON: a few tens of KB for
hundreds of configurations, small enough to keep in the repository.
"""

from __future__ import annotations

import datetime as dt
import gzip
import itertools
import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from fishopt.errors import FishoptError
from fishopt.search import space
from fishopt.search.spec import StudySpec

FORMAT = "fishopt-replay-table/1"
Point = tuple  # one value per axis, in axis order


@dataclass(frozen=True)
class Axis:
    """One searched parameter of the grid.

    A numeric axis is shown to samplers as the index of its values (an integer 0..n-1), so
    they see its order and even spacing (grids are written evenly on their own scale: learning
    rates and widths geometric), and never propose a value between two grid points that the
    table has no curve for. Other axes (optimizer names, patterns, booleans) are categorical.
    """

    name: str
    values: tuple
    ordered: bool

    def distribution(self) -> BaseDistribution:
        if self.ordered:
            return IntDistribution(0, len(self.values) - 1)
        return CategoricalDistribution(list(self.values))

    def encode(self, value: Any) -> Any:
        return self.values.index(value) if self.ordered else value

    def decode(self, param: Any) -> Any:
        return self.values[int(param)] if self.ordered else param


@dataclass(frozen=True)
class Table:
    """Curves of every configuration of a grid: ``curves[config, seed, epoch]``.

    ``curves`` holds nan after the last epoch a trial ran (a diverged trial stops early, as
    training does). ``alias`` maps every grid point to the configuration it trains: two points
    that train the same network (one hidden layer is "constant" and "decreasing" alike) share
    one configuration and its curves.
    """

    name: str
    axes: tuple[Axis, ...]
    configs: tuple[Point, ...]
    curves: np.ndarray
    alias: dict[Point, int]
    spec: dict  # the grid study's spec (StudySpec.to_dict)
    meta: dict = field(default_factory=dict)  # how the table was made

    # ------------------------------------------------------------------------ what it holds

    @property
    def n_configs(self) -> int:
        return int(self.curves.shape[0])

    @property
    def n_seeds(self) -> int:
        return int(self.curves.shape[1])

    @property
    def epochs(self) -> int:
        return int(self.curves.shape[2])

    @property
    def values(self) -> np.ndarray:
        """Each (configuration, seed)'s trial value: its best epoch's validation F1."""
        return np.nanmax(self.curves, axis=2)

    @property
    def truth(self) -> np.ndarray:
        """Each configuration's true score: its mean value over the table's seeds."""
        return self.values.mean(axis=1)

    @property
    def standard_errors(self) -> np.ndarray:
        """The standard error of each configuration's mean over its seeds."""
        return self.values.std(axis=1, ddof=1) / math.sqrt(self.n_seeds)

    def noise(self) -> float:
        """The table's own seed noise: the median standard error of a configuration's mean."""
        return float(np.median(self.standard_errors))

    def trial_noise(self) -> float:
        """The seed noise of one trial: the median spread (sd) of a configuration's values
        over its seeds (what ``outlook.more_trials`` compares a regret bound with)."""
        return float(np.median(self.values.std(axis=1, ddof=1)))

    def margin(self, at_least: float = 0.01) -> float:
        """The success margin a replay is judged with: never below the table's seed noise,
        because a difference smaller than that cannot be told from the seed."""
        return max(at_least, self.noise())

    def near_best(self, margin: float) -> int:
        """How many configurations are within ``margin`` of the best configuration's mean."""
        truth = self.truth
        return int((truth >= truth.max() - margin).sum())

    def grid_epochs(self) -> int:
        """Epochs a one-seed grid trains: every distinct configuration once, to the end."""
        return int(np.isfinite(self.curves[:, 0, :]).sum())

    def grid_points(self) -> int:
        """Points of the full product of the axes (a grid sampler visits all of them)."""
        return math.prod(len(a.values) for a in self.axes)

    # ---------------------------------------------------------------- what a sampler sees

    def distributions(self) -> dict[str, BaseDistribution]:
        return {a.name: a.distribution() for a in self.axes}

    def config_of(self, params: dict) -> int:
        """The configuration a trial's (encoded) parameters train."""
        return self.alias[tuple(a.decode(params[a.name]) for a in self.axes)]

    def params_of(self, config: int) -> dict:
        """The encoded parameters of a configuration, as a sampler would propose them."""
        return {a.name: a.encode(v) for a, v in zip(self.axes, self.configs[config], strict=True)}

    def label(self, config: int) -> str:
        parts = []
        for a, v in zip(self.axes, self.configs[config], strict=True):
            shown = f"{v:.3g}" if isinstance(v, float) else str(v)
            parts.append(shown if a.name == "optimizer" else f"{a.name}={shown}")
        return " ".join(parts)

    # ------------------------------------------------------------------------------ files

    def to_json(self) -> dict:
        curves = [
            [[None if math.isnan(v) else round(float(v), 5) for v in seed] for seed in config]
            for config in self.curves
        ]
        aliases = [[list(p), i] for p, i in self.alias.items() if self.configs[i] != p]
        return {
            "format": FORMAT,
            "name": self.name,
            "axes": [
                {"name": a.name, "values": list(a.values), "ordered": a.ordered} for a in self.axes
            ],
            "configs": [list(c) for c in self.configs],
            "aliases": aliases,
            "curves": curves,
            "spec": self.spec,
            "meta": self.meta,
        }

    @classmethod
    def from_json(cls, d: dict) -> Table:
        if d.get("format") != FORMAT:
            raise FishoptError(f"not a replay table (format {d.get('format')!r}, want {FORMAT})")
        axes = tuple(Axis(a["name"], tuple(a["values"]), bool(a["ordered"])) for a in d["axes"])
        configs = tuple(tuple(c) for c in d["configs"])
        curves = np.array(
            [[[math.nan if v is None else v for v in s] for s in c] for c in d["curves"]],
            dtype=float,
        )
        alias = {c: i for i, c in enumerate(configs)}
        alias.update({tuple(p): int(i) for p, i in d.get("aliases", [])})
        return cls(d["name"], axes, configs, curves, alias, d["spec"], d.get("meta", {}))

    def save(self, path: Path) -> Path:
        """Write the table as gzipped JSON (to a temp file, renamed into place)."""
        from fishopt.files import write_bytes

        text = json.dumps(self.to_json(), separators=(",", ":"))
        write_bytes(path, gzip.compress(text.encode(), mtime=0))
        return path


def load(path: str | Path) -> Table:
    try:
        raw = gzip.decompress(Path(path).read_bytes())
        return Table.from_json(json.loads(raw))
    except (OSError, EOFError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise FishoptError(f"{path}: cannot read a replay table: {exc}") from None


# ------------------------------------------------------------------------- from a study


def _axes(spec: StudySpec) -> tuple[Axis, ...]:
    axes = []
    for name, values in space.grid(spec).items():
        if name == "repeat":
            continue
        numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
        axes.append(Axis(name, tuple(sorted(values) if numeric else values), numeric))
    return tuple(axes)


def _network(params: dict, spec: StudySpec) -> space.TrialConfig:
    """What a set of parameters trains, whatever its repeat."""
    params = {**params, "repeat": 0} if spec.repeats > 1 else dict(params)
    return replace(space.network_key(params, spec), repeat=None)


def _curve(trial: FrozenTrial, epochs: int) -> list[float]:
    steps = trial.intermediate_values
    return [float(steps.get(e, math.nan)) for e in range(1, epochs + 1)]


def replayable_error(name: str, spec: dict) -> FishoptError | None:
    """Why a study with this recorded spec (``StudySpec.to_dict``) cannot be a replay table
    (a grid with repeats), or None."""
    sampler = (spec.get("sampler") or {}).get("name")
    repeats = int(spec.get("repeats") or 1)
    if sampler != "grid" or repeats < 2 or spec.get("tuned"):
        return FishoptError(
            f"study {name!r} is not a grid with repeats (sampler {sampler}, repeats {repeats}): "
            "replay needs a finished grid study that trained every configuration with 2 or "
            "more seeds, e.g. widths or depth"
        )
    return None


def from_study(study: optuna.Study, spec: StudySpec, meta: dict | None = None) -> Table:
    """The table of a finished grid study: every configuration's curves, one per seed.

    Refused (one line) unless the study is a grid with repeats whose every configuration has
    completed at least ``repeats`` trials; a configuration run more often keeps its first
    ``repeats`` trials (by number), so every configuration has the same number of seeds.
    """
    error = replayable_error(study.study_name, spec.to_dict())
    if error is not None:
        raise error
    axes = _axes(spec)
    names = [a.name for a in axes]
    by_network: dict[space.TrialConfig, list[FrozenTrial]] = {}
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        # A trial records only the parameters it asked: one hidden layer asks no pattern.
        by_network.setdefault(_network(t.params, spec), []).append(t)
    configs: list[Point] = []
    keys: list[space.TrialConfig] = []
    index: dict[space.TrialConfig, int] = {}
    alias: dict[Point, int] = {}
    missing: set[space.TrialConfig] = set()
    for point in itertools.product(*(a.values for a in axes)):
        key = _network(dict(zip(names, point, strict=True)), spec)
        if key not in index:
            if len(by_network.get(key, [])) < spec.repeats:
                missing.add(key)
                continue
            index[key] = len(configs)
            configs.append(point)
            keys.append(key)
        alias[point] = index[key]
    if missing:
        raise FishoptError(
            f"study {study.study_name!r} is not finished: {len(missing)} of "
            f"{len(missing) + len(configs)} "
            f"configurations have fewer than {spec.repeats} completed trials; run `fishopt "
            f"study {study.study_name}` to finish it"
        )
    curves = np.array(
        [
            [
                _curve(t, spec.epochs)
                for t in sorted(by_network[keys[i]], key=lambda t: t.number)[: spec.repeats]
            ]
            for i in range(len(configs))
        ]
    )
    info = {
        "study": study.study_name,
        "made": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return Table(
        study.study_name,
        axes,
        tuple(configs),
        curves,
        alias,
        spec.to_dict(),
        {**info, **(meta or {})},
    )
