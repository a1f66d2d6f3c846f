"""One trial: sample its settings, train, record what a reader of the study needs.

A trial's training seed is derived from the study seed and the trial number (a retry keeps the
number of the trial it retries), so every trial can be re-run exactly. The trial's record is
written in one storage transaction at its end (``storage.set_user_attrs``): with cheap trials,
a dozen separate writes cost more than the training.
"""

from __future__ import annotations

import hashlib
import math
import statistics
from collections.abc import Callable, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from fishopt import config
from fishopt.search import hold, holdout, space, tuned
from fishopt.search.context import Context
from fishopt.search.spec import StudySpec
from fishopt.search.studies import origin_number
from fishopt.storage import fence
from fishopt.storage.connect import set_user_attrs
from fishopt.training.model import MLPSpec, load_model, parameter_count
from fishopt.training.train import EpochRecord, TrainConfig, TrainResult, evaluate, train

# Called after a trial trains, before it is stored (keeps the best model as found).
TrainedHook = Callable[[optuna.Trial, MLPSpec, TrainResult], None]


def derive_seed(study_seed: int, trial_number: int) -> int:
    """A trial's seed from the study seed and its number; recorded so the trial can be re-run."""
    digest = hashlib.sha256(f"fishopt/{study_seed}/{trial_number}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


def objective(
    ctx: Context,
    on_trained: TrainedHook | None = None,
    stop_now: Callable[[], bool] | None = None,
    check_alive: Callable[[], None] | None = None,
    tags: dict | None = None,
    precision: str = "auto",
) -> Callable[[optuna.Trial], float]:
    """The Optuna objective.

    ``stop_now`` and ``check_alive`` are polled at each epoch boundary, before the epoch is
    reported: a stop requested there interrupts the trial between storage writes, never inside
    one (an interrupt in the middle of a write leaves Optuna unable to record the trial's end),
    and a worker that lost its storage stops training instead of running on as a trial that
    others will fail and retry. ``tags`` are recorded with the trial's identity when it starts
    (the worker that runs it).

    A trial writes its user attributes twice, each time in one transaction: who it is (seed,
    repeat, configuration) when it starts, so a trial whose worker is killed still says so,
    and what it found (curves, best epoch, test figures) when it ends.

    ``precision`` is the study's (``search.precision``), so every trial of it trains alike.
    In the tuned protocol (``search.tuned``) search trials are scored on the selection half of
    the validation split; confirm and defaults runs choose their epoch there too, and their
    value is the reporting half's macro-F1 at that epoch.
    """
    spec = ctx.spec
    prunes = spec.pruner["name"] != "none"
    # vary_split is refused with the tuned protocol, so its trials all use ctx.tensors.
    halves = (
        holdout.split_valid(ctx.tensors.X_valid, ctx.tensors.y_valid, spec.base_split_seed)
        if spec.tuned and tuned.holds_out(spec.tuned)
        else None
    )
    held = hold.parse(config.resolve_hold())  # tests only: see search/hold.py

    def run(trial: optuna.Trial) -> float:
        # The trial as Optuna created it (enqueued attributes, retry marks), read without a query.
        frozen = fence.frozen_of(trial)
        cfg = space.suggest(trial, spec)
        # A re-evaluation (a completed configuration queued again with another seed) runs to
        # the end: it measures a configuration that already survived the pruner, and pruning
        # it on one noisy epoch would leave that configuration without its repeats.
        prune_this = prunes and "repeat_of" not in frozen.user_attrs
        model_spec = cfg.mlp(ctx.in_features, ctx.n_classes)
        phase = frozen.user_attrs.get("phase")
        reports = halves is not None and phase in (tuned.CONFIRM, tuned.DEFAULTS)
        if phase in (tuned.CONFIRM, tuned.DEFAULTS):  # paired: the r-th seed of every optimizer
            seed = tuned.confirm_seed(spec.seed, int(frozen.user_attrs.get("repeat", 0)))
        else:
            seed = derive_seed(spec.seed, origin_number(frozen))
        repeat = cfg.repeat if cfg.repeat is not None else frozen.user_attrs.get("repeat", 0)
        t, split_seed = ctx.tensors_for(int(repeat))
        X_valid, y_valid = t.X_valid, t.y_valid
        if halves is not None:
            X_valid, y_valid = halves[0], halves[1]
        record: dict = {
            "repeat": repeat,
            "seed": seed,
            "config": space.config_key(trial.params),
            "hidden": list(cfg.hidden),
            "n_params": parameter_count(model_spec),
            **({"split_seed": split_seed} if spec.vary_split else {}),
            **(
                {"scored_on": "reporting" if reports else "selection", "valid_images": len(y_valid)}
                if halves is not None
                else {}
            ),
        }
        set_user_attrs(trial, {**record, **(tags or {})})  # a killed trial still says who it was
        record = {}
        history: list[EpochRecord] = []

        def on_epoch(epoch: EpochRecord) -> None:
            if held is not None:
                held.at(epoch.epoch, trial.number)
            if stop_now is not None and stop_now():
                raise KeyboardInterrupt
            if check_alive is not None:
                check_alive()
            history.append(epoch)
            trial.report(epoch.valid_f1, epoch.epoch)
            if prune_this and math.isfinite(epoch.train_loss) and trial.should_prune():
                raise optuna.TrialPruned(f"epoch {epoch.epoch}: valid F1 {epoch.valid_f1:.3f}")

        config = TrainConfig(
            epochs=spec.epochs,
            batch_size=cfg.batch_size,
            seed=seed,
            device=ctx.device,
            precision=precision,
        )
        try:
            result = train(
                model_spec, cfg.optim, t.X_train, t.y_train, X_valid, y_valid, config, on_epoch
            )
            value = result.best_valid_f1
            record.update(
                best_epoch=result.best_epoch, diverged=result.diverged, precision=result.precision
            )
            model = (
                load_model(model_spec, result.state, ctx.device)
                if reports or len(t.y_test)
                else None
            )
            if reports:  # the chosen epoch's weights, measured on images nothing chose with
                assert halves is not None and model is not None
                shown = evaluate(model, halves[2], halves[3], ctx.n_classes)
                value = shown.macro_f1
                record.update(
                    select_f1=result.best_valid_f1,
                    report_f1=shown.macro_f1,
                    report_acc=shown.accuracy,
                    report_images=len(halves[3]),
                )
            if model is not None and len(t.y_test):
                test = evaluate(model, t.X_test, t.y_test, ctx.n_classes, detailed=True)
                record.update(
                    test_acc=test.accuracy, test_f1=test.macro_f1, test_confusion=test.confusion
                )
            if on_trained is not None:
                on_trained(trial, model_spec, result)
        except KeyboardInterrupt:
            record["interrupted"] = True
            raise
        finally:
            record.update(history_attrs(history))
            set_user_attrs(trial, record)
        return value

    return run


def history_attrs(history: Sequence[EpochRecord]) -> dict:
    if not history:
        return {}
    return {
        "history": [r.to_dict() for r in history],
        "epochs_run": len(history),
        "epoch_seconds": statistics.fmean(r.seconds for r in history),
    }


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
