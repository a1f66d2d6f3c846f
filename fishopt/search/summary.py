"""A study's trials grouped per optimizer or per configuration: the CLI's summary table.

Trials are grouped the way the question is asked: per optimizer in an optimizer comparison,
else per configuration (parameters without the repeat index), so repeats with other seeds land
in one row with their mean and spread.
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from optuna.trial import FrozenTrial, TrialState

from fishopt.search.studies import FINISHED
from fishopt.search.tuned import tuning_stands

if TYPE_CHECKING:  # the spec module imports torch; the report reads studies without it
    from fishopt.search.spec import StudySpec


@dataclass(frozen=True)
class GroupRow:
    key: str  # exact identity of the group (parameters at full precision)
    label: str  # the same for people: floats to 3 significant digits
    complete: int
    pruned: int
    failed: int
    mean: float
    std: float
    best: float
    test_f1: float
    trials: tuple[FrozenTrial, ...] = ()


def per_optimizer(kind: str, searched: Collection[str]) -> bool:
    """Whether a study asks "which optimizer": then trials group by optimizer alone."""
    return kind in ("optimizers", "optimizers-tuned") or set(searched) == {"optimizer"}


def _value(v: object) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def _parts(trial: FrozenTrial, show: Callable[[object], str]) -> list[str]:
    hidden = trial.user_attrs.get("hidden")
    parts = [
        f"{k}={show(v)}"
        for k, v in sorted(trial.params.items())
        if k != "repeat" and not k.startswith("n_units_l")
    ]
    if hidden is not None:
        parts.insert(0, "hidden=" + ("-".join(map(str, hidden)) or "none"))
    return parts


def group_key(trial: FrozenTrial, by_optimizer: bool, optimizer: str = "?") -> str:
    """Trials that differ only in their seed (repeat) share a key; ``optimizer`` names the
    group of trials that did not search it (a fixed one)."""
    if by_optimizer:
        return str(trial.params.get("optimizer", optimizer))
    return " ".join(_parts(trial, repr)) or "fixed"


# Short names for a label that must fit a narrow column; values that are names print bare.
SHORT = {"weight_decay": "wd", "dropout": "drop", "batch_size": "bs", "momentum": "mom"}
BARE = ("optimizer", "width_pattern")


def group_label(trial: FrozenTrial, by_optimizer: bool, varying: Collection[str] = ()) -> str:
    """The group for people: hidden widths, then only the parameters in ``varying`` (those
    that differ between the groups shown), floats to 3 significant digits."""
    if by_optimizer:
        return str(trial.params.get("optimizer", "?"))
    hidden = trial.user_attrs.get("hidden")
    parts = ["-".join(map(str, hidden)) or "linear"] if hidden is not None else []
    for k, v in sorted(trial.params.items()):
        if k not in varying or k in ("repeat", "n_layers") or k.startswith("n_units_l"):
            continue
        if k in BARE:
            parts.append(str(v))
        elif k == "batch_norm":
            parts.append("bn" if v else "no-bn")
        else:
            parts.append(f"{SHORT.get(k, k)}={_value(v)}")
    return " ".join(parts) or "fixed"


def varying_params(trials: Iterable[FrozenTrial]) -> set[str]:
    """Parameters that take more than one value among ``trials``."""
    seen: dict[str, set[str]] = defaultdict(set)
    for t in trials:
        for k, v in t.params.items():
            seen[k].add(repr(v))
    return {k for k, values in seen.items() if len(values) > 1}


def groups(
    trials: Iterable[FrozenTrial], by_optimizer: bool, optimizer: str = "?"
) -> dict[str, list[FrozenTrial]]:
    """Trials by group, in the order each group first appears. The CLI's table and the
    report's per-optimizer and per-configuration analyses all group through here."""
    out: dict[str, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        out[group_key(t, by_optimizer, optimizer)].append(t)
    return dict(out)


def summarize(spec: StudySpec, trials: Sequence[FrozenTrial]) -> list[GroupRow]:
    """One row per group of finished or failed trials, best mean first."""
    by_opt = per_optimizer(spec.kind, spec.space)
    ended = [t for t in trials if t.state in (*FINISHED, TrialState.FAIL)]
    if spec.tuned:  # the tuned protocol's answer is its confirm runs, once there are any
        phase = tuned_phase(ended)
        # ... or its defaults runs, for an optimizer whose tuned setting did not beat them
        kept = {
            name
            for name in spec.tuned["optimizers"]
            if phase == "confirm" and not tuning_stands(ended, name)
        }
        ended = [
            t
            for t in ended
            if t.user_attrs.get("phase", "search")
            == ("defaults" if t.params.get("optimizer") in kept else phase)
        ]
    varying = varying_params(ended)
    rows = []
    for key, ts in groups(ended, by_opt).items():
        complete = [t for t in ts if t.state == TrialState.COMPLETE and t.value is not None]
        values = [float(t.value) for t in complete]  # type: ignore[arg-type]
        best_trial = max(complete, key=lambda t: t.value) if complete else None  # type: ignore[arg-type, return-value]
        rows.append(
            GroupRow(
                key=key,
                label=group_label(ts[0], by_opt, varying),
                complete=len(values),
                pruned=sum(t.state == TrialState.PRUNED for t in ts),
                failed=sum(t.state == TrialState.FAIL for t in ts),
                mean=statistics.fmean(values) if values else math.nan,
                std=statistics.stdev(values) if len(values) > 1 else 0.0,
                best=max(values) if values else math.nan,
                test_f1=float(best_trial.user_attrs.get("test_f1", math.nan))
                if best_trial
                else math.nan,
                trials=tuple(ts),
            )
        )
    rows.sort(key=lambda r: (-(r.mean if not math.isnan(r.mean) else -1), r.label))
    return rows


def tuned_phase(trials: Sequence[FrozenTrial]) -> str:
    """Which phase of a tuned study to summarise: confirm once it has begun, else search."""
    return "confirm" if any(t.user_attrs.get("phase") == "confirm" for t in trials) else "search"
