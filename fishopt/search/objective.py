"""Running a sub-study: objective, sampler and pruner wiring, resume rules, summaries.

A study in storage remembers what it was created from (data fingerprint, split, spec
fingerprint); resuming it with anything incompatible is refused, because mixing trials trained on
different data or epochs would make every comparison in it meaningless.
"""

from __future__ import annotations

import hashlib
import math
import statistics
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import optuna
import torch
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from fishopt.data import Dataset, Split
from fishopt.errors import FishoptError
from fishopt.notes import save_study_note
from fishopt.search import space
from fishopt.search.spec import StudySpec
from fishopt.training.model import MLPSpec, build_mlp, parameter_count
from fishopt.training.train import EpochRecord, TrainConfig, TrainResult, evaluate, train

ATTR = "fishopt"  # study user attribute holding what the study was created from
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# Called after a trial trains, before it is stored (issue: keep the best model as found).
TrainedHook = Callable[[optuna.Trial, "Context", space.TrialConfig, TrainResult], None]


@dataclass(frozen=True)
class Tensors:
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_valid: torch.Tensor
    y_valid: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(frozen=True)
class Context:
    """Everything a trial needs, built once per process."""

    spec: StudySpec
    dataset: Dataset
    split: Split
    tensors: Tensors
    device: str = "cpu"

    @property
    def n_classes(self) -> int:
        return len(self.dataset.classes)

    @property
    def in_features(self) -> int:
        return int(self.dataset.X.shape[1])


def make_tensors(ds: Dataset, split: Split, device: str = "cpu") -> Tensors:
    """Copy each split once into contiguous tensors on the device; trials only slice them."""

    def take(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.from_numpy(np.ascontiguousarray(ds.X[idx], dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(ds.y[idx], dtype=np.int64))
        return X.to(device), y.to(device)

    return Tensors(*take(split.train), *take(split.valid), *take(split.test))


def derive_seed(study_seed: int, trial_number: int) -> int:
    """A trial's seed from the study seed and its number; recorded so the trial can be re-run."""
    digest = hashlib.sha256(f"fishopt/{study_seed}/{trial_number}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def origin_number(trial: optuna.Trial | FrozenTrial) -> int:
    """A retried trial keeps the seed of the trial it retries, so the retry is exact."""
    if isinstance(trial, FrozenTrial):
        frozen = trial
    else:
        frozen = trial.study._storage.get_trial(trial._trial_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        retried = RetryHeartbeatStaleTrialCallback.retried_trial_number(frozen)
    if retried is not None:
        return int(retried)
    number = frozen.user_attrs.get("retry_of")
    return int(number) if number is not None else frozen.number


# ----------------------------------------------------------------------------- sampler, pruner


class RequeueSafeGridSampler(optuna.samplers.GridSampler):
    """GridSampler that accepts re-queued trials (an interrupted grid point run again).

    Optuna's GridSampler.after_trial reads a ``grid_id`` that enqueued trials never get, and
    fails with KeyError once a single grid point is left; such a trial visits no new point, so
    only the study-exhausted check applies to it.
    """

    def after_trial(self, study, trial, state, values) -> None:  # type: ignore[no-untyped-def]
        if "grid_id" in study._storage.get_trial_system_attrs(trial._trial_id):
            super().after_trial(study, trial, state, values)
        elif not self._get_unvisited_grid_ids(study):
            study.stop()


def make_sampler(spec: StudySpec, distributed: bool = False) -> optuna.samplers.BaseSampler:
    opts = {k: v for k, v in spec.sampler.items() if k != "name"}
    name = spec.sampler["name"]
    # Workers sharing a study must not draw the same sequence (each trial stays exact: its
    # training seed comes from its number). TPE's constant liar (on by default) already spreads
    # parallel workers apart.
    seed = None if distributed and name != "grid" else spec.seed
    if name == "grid":
        return RequeueSafeGridSampler(space.grid(spec), seed=seed)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "cmaes":
        # CMA-ES handles only numeric parameters; categoricals fall back to random sampling.
        return optuna.samplers.CmaEsSampler(
            seed=seed,
            warn_independent_sampling=False,
            n_startup_trials=int(opts.get("n_startup_trials", 1)),
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
        warn_independent_sampling=False,
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


# ----------------------------------------------------------------------------------- creation


def study_identity(ctx: Context) -> dict:
    return {
        "spec": ctx.spec.to_dict(),
        "spec_fingerprint": ctx.spec.fingerprint(),
        "data_fingerprint": ctx.dataset.fingerprint,
        "data_source": ctx.dataset.source,
        "classes": list(ctx.dataset.classes),
        "preprocessing": ctx.dataset.preprocessing,
        "split": ctx.split.describe(),
        "in_features": ctx.in_features,
    }


def open_study(ctx: Context, storage: optuna.storages.BaseStorage, name: str) -> optuna.Study:
    """Create the study, or load it if it exists and was made from the same data and spec."""
    study = optuna.create_study(
        storage=storage,
        study_name=name,
        load_if_exists=True,
        direction="maximize",
        sampler=make_sampler(ctx.spec),
        pruner=make_pruner(ctx.spec),
    )
    identity = study_identity(ctx)
    stored = study.user_attrs.get(ATTR)
    if stored is None:
        study.set_user_attr(ATTR, identity)
        study.set_metric_names(["valid_macro_f1"])
        save_study_note(study)  # the dashboard shows what this study asks and ran on
        return study
    if stored.get("data_fingerprint") != identity["data_fingerprint"]:
        raise FishoptError(
            f"study {name!r} was run on other data (fingerprint {stored.get('data_fingerprint')},"
            f" now {identity['data_fingerprint']}); use a new study name, e.g. --name {name}-2"
        )
    if (
        stored.get("spec_fingerprint") != identity["spec_fingerprint"]
        or stored.get("split") != identity["split"]
    ):
        raise FishoptError(
            f"study {name!r} was run with a different spec or split (epochs, seed, space, "
            f"sampler...); use a new study name, e.g. --name {name}-2"
        )
    return study


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def requeue_interrupted(study: optuna.Study) -> int:
    """Re-enqueue the params of trials that failed by interruption and were never finished.

    GridSampler counts a FAIL as visited, so without this an interrupted grid point would be
    lost on resume.
    """
    trials = study.get_trials(deepcopy=False)
    done = {
        space.config_key(t.params) + str(t.params.get("repeat", t.user_attrs.get("repeat")))
        for t in trials
        if t.state in (*FINISHED, TrialState.RUNNING, TrialState.WAITING)
    }
    queued = 0
    for t in trials:
        if t.state != TrialState.FAIL or not t.user_attrs.get("interrupted"):
            continue
        key = space.config_key(t.params) + str(t.params.get("repeat", t.user_attrs.get("repeat")))
        if key in done or not t.params:
            continue
        attrs = {k: t.user_attrs[k] for k in ("repeat", "repeat_of") if k in t.user_attrs}
        study.enqueue_trial(t.params, user_attrs={**attrs, "retry_of": origin_number(t)})
        done.add(key)
        queued += 1
    return queued


# ----------------------------------------------------------------------------------- objective


def objective(
    ctx: Context,
    on_trained: TrainedHook | None = None,
    stop_now: Callable[[], bool] | None = None,
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective. ``stop_now`` is polled at each epoch boundary: a stop requested
    there interrupts the trial between storage writes, never inside one (an interrupt in the
    middle of a write leaves Optuna unable to record the trial's end)."""
    spec = ctx.spec

    def run(trial: optuna.Trial) -> float:
        cfg = space.suggest(trial, spec)
        if cfg.repeat is not None:
            trial.set_user_attr("repeat", cfg.repeat)
        elif "repeat" not in trial.user_attrs:
            trial.set_user_attr("repeat", 0)
        seed = derive_seed(spec.seed, origin_number(trial))
        model_spec = MLPSpec(
            ctx.in_features, cfg.hidden, ctx.n_classes, cfg.dropout, cfg.batch_norm
        )
        trial.set_user_attr("seed", seed)
        trial.set_user_attr("config", space.config_key(trial.params))
        trial.set_user_attr("hidden", list(cfg.hidden))
        trial.set_user_attr("n_params", parameter_count(model_spec))
        history: list[EpochRecord] = []

        def on_epoch(record: EpochRecord) -> None:
            if stop_now is not None and stop_now():
                raise KeyboardInterrupt
            history.append(record)
            trial.report(record.valid_f1, record.epoch)
            if math.isfinite(record.train_loss) and trial.should_prune():
                raise optuna.TrialPruned(f"epoch {record.epoch}: valid F1 {record.valid_f1:.3f}")

        config = TrainConfig(
            epochs=spec.epochs, batch_size=cfg.batch_size, seed=seed, device=ctx.device
        )
        t = ctx.tensors
        try:
            result = train(
                model_spec, cfg.optim, t.X_train, t.y_train, t.X_valid, t.y_valid, config, on_epoch
            )
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            raise
        finally:
            _record_history(trial, history)
        trial.set_user_attr("best_epoch", result.best_epoch)
        trial.set_user_attr("diverged", result.diverged)
        if len(t.y_test):
            model = build_mlp(model_spec).to(ctx.device)
            model.load_state_dict(result.state)
            test = evaluate(model, t.X_test, t.y_test, ctx.n_classes)
            trial.set_user_attr("test_acc", test.accuracy)
            trial.set_user_attr("test_f1", test.macro_f1)
        if on_trained is not None:
            on_trained(trial, ctx, cfg, result)
        return result.best_valid_f1

    return run


def _record_history(trial: optuna.Trial, history: Sequence[EpochRecord]) -> None:
    if not history:
        return
    trial.set_user_attr("history", [r.to_dict() for r in history])
    trial.set_user_attr("epochs_run", len(history))
    trial.set_user_attr("epoch_seconds", statistics.fmean(r.seconds for r in history))


def repeat_callback(spec: StudySpec) -> Callable[[optuna.Study, FrozenTrial], None]:
    """For non-grid samplers: a completed config is queued again for its other seeds."""

    def callback(study: optuna.Study, trial: FrozenTrial) -> None:
        if spec.repeats <= 1 or trial.state != TrialState.COMPLETE:
            return
        if trial.user_attrs.get("repeat", 0) != 0 or "repeat" in trial.params:
            return
        for r in range(1, spec.repeats):
            study.enqueue_trial(trial.params, user_attrs={"repeat": r, "repeat_of": trial.number})

    return callback


# ------------------------------------------------------------------------------------ summary


@dataclass(frozen=True)
class GroupRow:
    label: str
    complete: int
    pruned: int
    failed: int
    mean: float
    std: float
    best: float
    test_f1: float


def group_label(spec: StudySpec, trial: FrozenTrial) -> str:
    """How a summary groups trials: per optimizer for the optimizers study, else per config."""
    if spec.kind == "optimizers" or ("optimizer" in spec.space and len(spec.space) == 1):
        return str(trial.params.get("optimizer", spec.fixed.get("optimizer", "?")))
    hidden = trial.user_attrs.get("hidden")
    parts = [
        f"{k}={v}"
        for k, v in sorted(trial.params.items())
        if k not in ("repeat", "n_units_l0") and not k.startswith("n_units_l")
    ]
    if hidden is not None:
        parts.insert(0, "hidden=" + ("-".join(map(str, hidden)) or "none"))
    return " ".join(parts) or "fixed"


def summarize(spec: StudySpec, trials: Sequence[FrozenTrial]) -> list[GroupRow]:
    groups: dict[str, list[FrozenTrial]] = defaultdict(list)
    for t in trials:
        if t.state in (*FINISHED, TrialState.FAIL):
            groups[group_label(spec, t)].append(t)
    rows = []
    for label, ts in groups.items():
        values = [t.value for t in ts if t.state == TrialState.COMPLETE and t.value is not None]
        complete = [t for t in ts if t.state == TrialState.COMPLETE and t.value is not None]
        best_trial = max(complete, key=lambda t: t.value) if complete else None
        rows.append(
            GroupRow(
                label=label,
                complete=len(values),
                pruned=sum(t.state == TrialState.PRUNED for t in ts),
                failed=sum(t.state == TrialState.FAIL for t in ts),
                mean=statistics.fmean(values) if values else float("nan"),
                std=statistics.stdev(values) if len(values) > 1 else 0.0,
                best=max(values) if values else float("nan"),
                test_f1=float(best_trial.user_attrs.get("test_f1", float("nan")))
                if best_trial
                else float("nan"),
            )
        )
    rows.sort(key=lambda r: (-(r.mean if not math.isnan(r.mean) else -1), r.label))
    return rows
