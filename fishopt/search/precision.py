"""One precision per study: what every trial of a study trains in, recorded when it starts.

``precision = "auto"`` trains in bf16 on a CPU with native bf16 (AMX or AVX512-BF16) and in
fp32 elsewhere, so a study resumed on another machine would mix precisions, and arms it
compares would no longer have trained alike. So the first session of a study resolves the
precision once, for the whole study, and records it (study user attribute ``precision``);
every later session, on any machine, trains in the recorded one. On a CPU that would have to
emulate a recorded bf16 (several times slower) the session says so, and how to get fp32
instead: a new study.

Resolved once per study rather than per trial, ``auto`` picks bf16 only if every batch size
the spec can draw would have picked it (``training.train.resolve_precision``: bf16 was
measured to pay from batch 50 up). A study made before this was recorded keeps the precision
its trials ran in (the most common one, with a warning if they were mixed).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial

if TYPE_CHECKING:  # the report reads precisions without torch; a session settles them with it
    from fishopt.search.spec import StudySpec

ATTR = "precision"  # study user attribute: "fp32" or "bf16"


def smallest_batch(spec: StudySpec) -> int:
    from fishopt.search.spec import DEFAULT_FIXED, Range

    dom = spec.space.get("batch_size")
    if isinstance(dom, Range):
        return int(dom.low)
    if dom:
        return int(min(dom))
    return int(spec.fixed.get("batch_size", DEFAULT_FIXED["batch_size"]))


def for_new_study(spec: StudySpec, device: str) -> str:
    """What ``auto`` resolves to for every trial of a new study of ``spec`` on this machine."""
    from fishopt.training.train import resolve_precision

    return resolve_precision("auto", device, smallest_batch(spec))


def ran_in(trials: Iterable[FrozenTrial]) -> Counter[str]:
    """How many finished trials trained in each precision (their ``precision`` attribute)."""
    return Counter(str(p) for t in trials if (p := t.user_attrs.get(ATTR)) is not None)


def describe(counts: Counter[str]) -> str:
    """``bf16`` or ``mixed: 20 bf16, 13 fp32``, for reports."""
    if not counts:
        return "unknown"
    if len(counts) == 1:
        return next(iter(counts))
    return "mixed: " + ", ".join(f"{n} {p}" for p, n in counts.most_common())


def of_study(user_attrs: Mapping, trials: Sequence[FrozenTrial]) -> str:
    """What a study's trials trained in, for a report: its trials' own record (a study made
    before precisions were recorded may have mixed them), else the recorded precision."""
    seen = ran_in(trials)
    return describe(seen) if seen else str(user_attrs.get(ATTR, "unknown"))


def settle(study: optuna.Study, spec: StudySpec, device: str) -> tuple[str, list[str]]:
    """The study's precision, recorded if it was not yet, and warnings for the log.

    Call under the study's claim lock, so that two workers joining a new study at once
    record one precision.
    """
    import torch

    from fishopt.training.hardware import native_bf16

    name = study.study_name
    notes: list[str] = []
    recorded = study.user_attrs.get(ATTR)
    if recorded is None:
        seen = ran_in(study.get_trials(deepcopy=False))
        recorded = seen.most_common(1)[0][0] if seen else for_new_study(spec, device)
        if len(seen) > 1:
            notes.append(
                f"study {name!r} ran its trials in more than one precision "
                f"({describe(seen)}); it keeps {recorded} from now on"
            )
        study.set_user_attr(ATTR, recorded)
    if recorded == "bf16" and torch.device(device).type == "cpu" and not native_bf16():
        notes.append(
            f"study {name!r} trains in bf16, as recorded when it started; this CPU has no "
            f"native bf16, so its trials run several times slower. For fp32, start a new "
            f"study (--name {name}-fp32)"
        )
    return str(recorded), notes
