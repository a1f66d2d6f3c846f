"""From resolved inputs to a running study: data, split, tensors, storage, budget.

Shared by ``fishopt study`` and every worker process, so all of them build the same context
the same way. Display is left to the caller through small callbacks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import optuna
import torch

from fishopt import data
from fishopt.config import Settings
from fishopt.errors import FishoptError
from fishopt.search import objective as study
from fishopt.search.spec import StudySpec
from fishopt.search.storage import open_storage

TrialCallback = Callable[[optuna.Study, optuna.trial.FrozenTrial], None]


@dataclass(frozen=True)
class Loaded:
    ctx: study.Context
    cache_hit: bool
    seconds: float


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise FishoptError("--device cuda: no CUDA device is available to torch here")
    if name not in ("cpu", "cuda"):
        raise FishoptError(f"--device {name}: expected auto, cpu or cuda")
    return name


def set_threads(threads: int | None) -> int:
    """Torch threads for this process, set before any tensor work (later calls are ignored)."""
    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n


def build_context(
    spec: StudySpec,
    source: data.SourceSpec,
    settings: Settings,
    *,
    device: str = "cpu",
    strict: bool = False,
    progress: data.Progress | None = None,
    generate_progress: data.Progress | None = None,
) -> Loaded:
    import time

    t0 = time.perf_counter()
    ds, hit = data.load(
        source,
        settings.cache_dir,
        spec.image_size,
        strict=strict,
        progress=progress,
        generate_progress=generate_progress,
    )
    seconds = time.perf_counter() - t0
    split = data.split(ds.y, spec.split, seed=spec.seed)
    tensors = study.make_tensors(ds, split, device)
    return Loaded(study.Context(spec, ds, split, tensors, device), hit, seconds)


def budget(spec: StudySpec, n_trials: int | None) -> int | None:
    """The study's total trial budget: flag, then spec, then the grid's size."""
    if n_trials is not None:
        return n_trials
    if spec.n_trials is not None:
        return spec.n_trials
    if spec.sampler["name"] == "grid":
        from fishopt.search.space import grid_size

        return grid_size(spec)
    return None


def open_and_prepare(ctx: study.Context, storage_url: str, name: str) -> optuna.Study:
    storage = open_storage(storage_url)
    st = study.open_study(ctx, storage, name)
    study.requeue_interrupted(st)
    return st


def run(
    ctx: study.Context,
    st: optuna.Study,
    n_trials: int | None,
    timeout: float | None,
    callbacks: Sequence[TrialCallback] = (),
    on_trained: study.TrainedHook | None = None,
) -> int:
    """Run until the budget is spent; returns how many trials this call finished."""
    if n_trials is None and timeout is None:
        raise FishoptError(
            f"study {ctx.spec.name!r} has neither n_trials nor timeout; "
            "pass --n-trials or --timeout"
        )
    before = study.finished_count(st)
    remaining = None if n_trials is None else n_trials - before
    if remaining is not None and remaining <= 0:
        return 0
    st.optimize(
        study.objective(ctx, on_trained),
        n_trials=remaining,
        timeout=timeout,
        callbacks=[study.repeat_callback(ctx.spec), *callbacks],
        gc_after_trial=False,
    )
    return study.finished_count(st) - before
