"""Study specs: ``studies/<name>.toml`` loaded and validated once, into frozen data.

A spec says *what to search* (keras-tuner's HyperModel side); ``space`` turns it into trial
parameters and ``loop`` runs it. Every mistake is reported with the file, the key and the
allowed values, so nothing downstream needs to re-check.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from dataclasses import asdict, dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

from fishopt.errors import FishoptError
from fishopt.search.tuned import parse_tuned
from fishopt.training import optim

SAMPLERS = ("tpe", "random", "grid", "cmaes", "gp")
PRUNERS = ("median", "hyperband", "successive-halving", "none")
KINDS = ("optimizers", "optimizers-tuned", "widths", "depth", "full", "custom")
WIDTH_PATTERNS = ("constant", "decreasing", "free")
TOP_KEYS = {
    "description",
    "question",
    "kind",
    "direction",
    "n_trials",
    "timeout",
    "epochs",
    "seed",
    "repeats",
    "image_size",
    "split",
    "sampler",
    "pruner",
    "fixed",
    "space",
    "tuned",
    "split_by",
    "split_seed",
    "vary_split",
}
SPLIT_BY = ("random", "original")
# Keys added after the first studies were stored, with their defaults (see fingerprint).
LATER_KEYS: dict[str, Any] = {
    "tuned": {},
    "split_by": "random",
    "split_seed": None,
    "vary_split": False,
}
# name -> (kind of value, lower bound, upper bound)
PARAMS: dict[str, tuple[str, float, float]] = {
    "optimizer": ("optimizer", 0, 0),
    "lr": ("float", 1e-7, 10.0),
    "weight_decay": ("float", 0.0, 1.0),
    "momentum": ("float", 0.0, 0.999),
    "n_layers": ("int", 0, 16),
    "units": ("int", 1, 65536),
    "width_pattern": ("pattern", 0, 0),
    "width_ratio": ("float", 0.05, 1.0),
    "dropout": ("float", 0.0, 0.95),
    "batch_norm": ("bool", 0, 0),
    "batch_size": ("int", 1, 65536),
}
FIXED_ONLY = {"hidden"}
DEFAULT_FIXED: dict[str, Any] = {
    "optimizer": "Adam",
    "n_layers": 2,
    "units": 256,
    "width_pattern": "constant",
    "width_ratio": 0.5,
    "dropout": 0.0,
    "batch_norm": False,
    "batch_size": 50,
}


@dataclass(frozen=True)
class Range:
    """A numeric range to sample from (``step`` only for ints)."""

    low: float
    high: float
    log: bool = False
    step: int | None = None


Choice = tuple  # a categorical: the allowed values


@dataclass(frozen=True)
class StudySpec:
    name: str
    description: str
    kind: str
    epochs: int
    seed: int
    repeats: int
    n_trials: int | None
    timeout: float | None
    sampler: dict = field(default_factory=lambda: {"name": "tpe"})
    pruner: dict = field(default_factory=lambda: {"name": "median"})
    fixed: dict = field(default_factory=dict)
    space: dict = field(default_factory=dict)  # name -> Range | Choice
    image_size: tuple[int, int] = (59, 45)
    split: tuple[float, float, float] = (0.9, 0.09, 0.01)
    question: str = ""
    direction: str = "maximize"
    source: str = ""
    # The tuned optimizer protocol (kind "optimizers-tuned"): trials_per_optimizer,
    # confirm_seeds, optimizers, weight_decay and the resolved per-optimizer spaces.
    tuned: dict = field(default_factory=dict)
    split_by: str = "random"  # random | original (keep copies of one original image together)
    split_seed: int | None = None  # None: the study seed
    vary_split: bool = False  # each repeat draws its own split (a source of variance)

    @property
    def base_split_seed(self) -> int:
        return self.seed if self.split_seed is None else self.split_seed

    def to_dict(self) -> dict:
        d = asdict(self)
        d["space"] = {
            k: (asdict(v) if isinstance(v, Range) else list(v)) for k, v in self.space.items()
        }
        return d

    def fingerprint(self) -> str:
        """What must match for a stored study to be resumed: everything but budget and prose."""
        d = self.to_dict()
        for k in ("description", "question", "n_trials", "timeout", "source", "name"):
            d.pop(k)
        # Keys added after studies were first stored count only when set, so a study made
        # before they existed still resumes.
        for k, default in LATER_KEYS.items():
            if d.get(k) == default:
                d.pop(k, None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> StudySpec:
        """The spec a study recorded (``to_dict``), rebuilt; unknown keys are ignored so that
        studies recorded by a newer fishopt still open."""
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["space"] = {
            k: Range(**v) if isinstance(v, dict) else tuple(v) for k, v in d["space"].items()
        }
        d["image_size"] = tuple(d["image_size"])
        d["split"] = tuple(d["split"])
        d["fixed"] = dict(d.get("fixed", {}))
        return cls(**d)

    def with_overrides(self, **kw: Any) -> StudySpec:
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


# ------------------------------------------------------------------------------------ locating


def builtin_dir() -> Path:
    """Specs shipped with fishopt: inside the wheel, or the repository's studies/ folder."""
    packaged = Path(str(resources.files("fishopt"))) / "_studies"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "studies"


def search_dirs(extra: str | Path | None = None) -> list[Path]:
    dirs = []
    if extra:
        dirs.append(Path(extra))
    env = os.environ.get("FISHOPT_STUDIES")
    if env:
        dirs.append(Path(env))
    dirs.append(builtin_dir())
    return dirs


def known_studies(extra: str | Path | None = None) -> list[str]:
    names: set[str] = set()
    for d in search_dirs(extra):
        if d.is_dir():
            names.update(p.stem for p in d.glob("*.toml"))
    return sorted(names)


def find(name: str, extra: str | Path | None = None) -> Path:
    """A path to a .toml, or a study name looked up in FISHOPT_STUDIES then the built-ins."""
    if name.endswith(".toml"):
        path = Path(name)
        if not path.is_file():
            raise FishoptError(f"{name}: no such study file")
        return path
    for d in search_dirs(extra):
        candidate = d / f"{name}.toml"
        if candidate.is_file():
            return candidate
    known = ", ".join(known_studies(extra)) or "none"
    raise FishoptError(f"unknown study {name!r}; known studies: {known}")


# ---------------------------------------------------------------------------------- validating


def load(name_or_path: str, extra: str | Path | None = None) -> StudySpec:
    path = find(name_or_path, extra)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise FishoptError(f"{path}: malformed TOML: {exc}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise FishoptError(f"{path}: cannot read: {exc}") from None
    return parse(raw, name=path.stem, source=str(path))


def parse(raw: dict, name: str, source: str = "<spec>") -> StudySpec:
    where = source

    def fail(key: str, msg: str) -> FishoptError:
        return FishoptError(f"{where}: {key}: {msg}")

    unknown = set(raw) - TOP_KEYS
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown key; allowed: {', '.join(sorted(TOP_KEYS))}")

    def integer(key: str, default: int | None, low: int = 0) -> int | None:
        value = raw.get(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise fail(key, f"must be an integer >= {low}, got {value!r}")
        return value

    kind = raw.get("kind", name if name in KINDS else "custom")
    if kind not in KINDS:
        raise fail("kind", f"unknown kind {kind!r}; allowed: {', '.join(KINDS)}")
    if raw.get("direction", "maximize") != "maximize":
        raise fail("direction", "only 'maximize' (validation macro-F1) is supported")
    timeout = raw.get("timeout")
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0
    ):
        raise fail("timeout", f"must be a positive number of seconds, got {timeout!r}")

    sampler = _named_table(raw.get("sampler", {"name": "tpe"}), "sampler", SAMPLERS, fail)
    pruner = _named_table(raw.get("pruner", {"name": "median"}), "pruner", PRUNERS, fail)
    fixed = _parse_fixed(raw.get("fixed", {}), fail)
    space = _parse_space(raw.get("space", {}), fail)
    if sampler["name"] == "grid":
        ranged = [k for k, v in space.items() if isinstance(v, Range)]
        if ranged:
            raise fail(f"space.{ranged[0]}", "a grid sampler needs a list of values, not a range")
        pattern = space.get("width_pattern", (fixed.get("width_pattern", "constant"),))
        if "free" in pattern and "n_layers" in space:
            raise fail(
                "space.width_pattern",
                "'free' widths with a searched n_layers cannot form "
                "a grid; use 'constant' or 'decreasing'",
            )
    if "hidden" in fixed and ({"n_layers", "units", "width_pattern"} & set(space)):
        raise fail(
            "fixed.hidden",
            "fixes the architecture, so [space] may not also search "
            "n_layers, units or width_pattern",
        )

    split = raw.get("split", [0.9, 0.09, 0.01])
    if (
        not isinstance(split, list)
        or len(split) != 3
        or not all(isinstance(v, int | float) and v >= 0 for v in split)
        or abs(sum(split) - 1) > 1e-6
        or split[0] <= 0
        or split[1] <= 0
    ):
        raise fail("split", f"must be [train, valid, test] fractions summing to 1, got {split!r}")
    split_by = raw.get("split_by", "random")
    if split_by not in SPLIT_BY:
        raise fail("split_by", f"unknown {split_by!r}; allowed: {', '.join(SPLIT_BY)}")
    vary_split = raw.get("vary_split", False)
    if not isinstance(vary_split, bool):
        raise fail("vary_split", f"must be true or false, got {vary_split!r}")
    image_size = raw.get("image_size", [59, 45])
    if (
        not isinstance(image_size, list)
        or len(image_size) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in image_size)
    ):
        raise fail("image_size", f"must be [width, height] in pixels, got {image_size!r}")

    return StudySpec(
        name=name,
        description=str(raw.get("description", "")),
        question=str(raw.get("question", "")),
        kind=kind,
        epochs=integer("epochs", 20, 1) or 20,
        seed=integer("seed", 0, 0) or 0,
        repeats=integer("repeats", 1, 1) or 1,
        n_trials=integer("n_trials", None, 1),
        timeout=float(timeout) if timeout is not None else None,
        sampler=sampler,
        pruner=pruner,
        fixed=fixed,
        space=space,
        image_size=(int(image_size[0]), int(image_size[1])),
        split=(float(split[0]), float(split[1]), float(split[2])),
        source=source,
        tuned=parse_tuned(raw, kind, space, sampler, pruner, fail),
        split_by=split_by,
        split_seed=integer("split_seed", None, 0),
        vary_split=vary_split,
    )


def _named_table(value: Any, key: str, allowed: tuple[str, ...], fail: Any) -> dict:
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict) or "name" not in value:
        raise fail(key, f"must be a table with a name; allowed names: {', '.join(allowed)}")
    if value["name"] not in allowed:
        raise fail(f"{key}.name", f"unknown {key} {value['name']!r}; allowed: {', '.join(allowed)}")
    for option, v in value.items():
        if option != "name" and (isinstance(v, bool) or not isinstance(v, int | float)):
            raise fail(f"{key}.{option}", f"must be a number, got {v!r}")
    return dict(value)


def _check_value(name: str, value: Any, fail: Any, key: str) -> Any:
    kind, low, high = PARAMS[name]
    if kind == "optimizer":
        try:
            optim.check_name(value)
        except ValueError as exc:
            raise fail(key, str(exc)) from None
        return value
    if kind == "pattern":
        if value not in WIDTH_PATTERNS:
            raise fail(
                key, f"unknown width pattern {value!r}; allowed: {', '.join(WIDTH_PATTERNS)}"
            )
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise fail(key, f"must be true or false, got {value!r}")
        return value
    ok_type = isinstance(value, int) if kind == "int" else isinstance(value, int | float)
    if isinstance(value, bool) or not ok_type or not low <= value <= high:
        raise fail(
            key,
            f"must be {'an integer' if kind == 'int' else 'a number'} in "
            f"[{low:g}, {high:g}], got {value!r}",
        )
    return value


def _parse_fixed(table: Any, fail: Any) -> dict:
    if not isinstance(table, dict):
        raise fail("fixed", "must be a table")
    out = {}
    for key, value in table.items():
        if key == "hidden":
            if not isinstance(value, list) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
            ):
                raise fail("fixed.hidden", f"must be a list of positive widths, got {value!r}")
            out[key] = list(value)
        elif key in PARAMS:
            out[key] = _check_value(key, value, fail, f"fixed.{key}")
        else:
            allowed = ", ".join(sorted([*PARAMS, *FIXED_ONLY]))
            raise fail(f"fixed.{key}", f"unknown key; allowed: {allowed}")
    return out


def _parse_space(table: Any, fail: Any) -> dict:
    if not isinstance(table, dict):
        raise fail("space", "must be a table")
    out: dict[str, Range | Choice] = {}
    for key, value in table.items():
        where = f"space.{key}"
        if key not in PARAMS:
            raise fail(where, f"unknown parameter; allowed: {', '.join(sorted(PARAMS))}")
        kind = PARAMS[key][0]
        if isinstance(value, list):
            if not value:
                raise fail(where, "empty list of choices")
            if len(set(map(repr, value))) != len(value):
                raise fail(where, f"repeated choices in {value!r}")
            out[key] = tuple(_check_value(key, v, fail, where) for v in value)
        elif isinstance(value, dict):
            if kind not in ("int", "float"):
                raise fail(where, "must be a list of choices")
            extra = set(value) - {"low", "high", "log", "step"}
            if extra or "low" not in value or "high" not in value:
                raise fail(where, "a range needs low and high (optional log, step)")
            low = _check_value(key, value["low"], fail, f"{where}.low")
            high = _check_value(key, value["high"], fail, f"{where}.high")
            if low >= high:
                raise fail(where, f"empty range: low {low!r} >= high {high!r}")
            log = bool(value.get("log", False))
            if log and low <= 0:
                raise fail(where, "a log range needs low > 0")
            step = value.get("step")
            if step is not None and (kind != "int" or not isinstance(step, int) or step < 1):
                raise fail(f"{where}.step", "step is a positive integer, for integer ranges")
            out[key] = Range(low, high, log, step)
        else:
            out[key] = (_check_value(key, value, fail, where),)
    return out
