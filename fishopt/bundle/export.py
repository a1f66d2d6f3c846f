"""Best trial -> model bundle: weights, metadata, model card, optional ONNX.

A bundle is a folder that needs no training code to use:

- ``model.safetensors``: weights only (nothing is ever unpickled);
- ``model.json``: the network spec, class names in order, preprocessing, where the model came
  from (study, trial, params, data fingerprint), versions, the weights' sha256 and its metrics
  (validation F1; test accuracy, macro-F1, per-class F1 and confusion matrix);
- ``MODEL_CARD.md``: the same for people (``card``); ``model.onnx`` when asked for, checked
  against torch (``onnx``).

The weights come from the artifact the study stored when the trial ran (``artifacts``), so
exporting does not retrain; ``--retrain`` trains the best params again on train+valid.
The bundle is built in a temporary folder beside ``out`` and renamed into place.
"""

from __future__ import annotations

import datetime as dt
import json
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial

from fishopt.bundle import artifacts
from fishopt.bundle.card import model_card
from fishopt.bundle.onnx import ONNX_TOLERANCE, sha256_file, write_onnx
from fishopt.config import Settings
from fishopt.errors import FishoptError
from fishopt.files import atomic_dir
from fishopt.search import space, studies
from fishopt.search.context import Context
from fishopt.search.session import open_existing
from fishopt.stats import held_out_figures
from fishopt.training.model import MLPSpec, load_model
from fishopt.training.train import Metrics, TrainConfig, evaluate, train

__all__ = ["ONNX_TOLERANCE", "export_best", "write_bundle", "write_onnx"]

FORMAT = "fishopt-bundle"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "model.json"
CARD = "MODEL_CARD.md"


@dataclass(frozen=True)
class Exported:
    path: Path
    meta: dict


def versions() -> dict:
    try:
        fishopt_version = metadata.version("fishopt")
    except metadata.PackageNotFoundError:
        fishopt_version = "unknown"
    return {
        "fishopt": fishopt_version,
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "python": platform.python_version(),
    }


def best_trial(st: optuna.Study, retrain: bool) -> FrozenTrial:
    """The best completed trial; without --retrain it must have stored its weights.

    Ties on the value go to a trial that stored weights, then to the earliest.
    """
    trials = st.get_trials(deepcopy=False)
    best = studies.best_completed(trials)
    if best is None:
        raise FishoptError(
            f"study {st.study_name!r} has no complete trials ({studies.tally(trials).describe()})"
        )
    tied = [t for t in studies.completed(trials) if t.value == best.value]
    best = min(tied, key=lambda t: (artifacts.ATTR not in t.user_attrs, t.number))
    if not retrain and artifacts.ATTR not in best.user_attrs:
        raise FishoptError(weights_missing(st, best))
    return best


def weights_missing(st: optuna.Study, best: FrozenTrial) -> str:
    """What export-best says when the best trial has no stored weights: why, and what is."""
    why = artifacts.not_kept(best)
    kept = artifacts.stored_trials(st)
    return (
        f"study {st.study_name!r}: best trial {best.number} "
        + (
            f"has no stored weights: they were not kept ({why})"
            if why
            else "stored no weights (it ran without fishopt's keep-best hook)"
        )
        + (
            f"; the best trial with weights is {kept[0].number} (valid F1 {kept[0].value:.3f})"
            if kept
            else ""
        )
        + "; pass --retrain to train its params again"
    )


def test_metrics(model: torch.nn.Module, ctx: Context) -> dict | None:
    t = ctx.tensors
    if not len(t.y_test):
        return None
    m: Metrics = evaluate(model, t.X_test, t.y_test, ctx.n_classes, detailed=True)
    held_out = held_out_figures(m.confusion)
    return {
        **held_out.to_dict(),  # n, accuracy and macro-F1 with 95% intervals, small-split warning
        "per_class_f1": dict(zip(ctx.dataset.classes, m.per_class_f1, strict=True)),
        "confusion": m.confusion,
    }


def retrain(ctx: Context, trial: FrozenTrial) -> tuple[dict[str, torch.Tensor], MLPSpec]:
    """The trial's params trained again on train+valid for its best epoch count.

    The last epoch's weights are kept: the epoch count was chosen on the validation split
    during the search, and no held-out data is left to choose again (test stays untouched).
    """
    cfg = space.suggest(trial, ctx.spec)  # a FrozenTrial answers suggest_* with its params
    model_spec = cfg.mlp(ctx.in_features, ctx.n_classes)
    t = ctx.tensors
    X = torch.cat([t.X_train, t.X_valid])
    y = torch.cat([t.y_train, t.y_valid])
    epochs = int(trial.user_attrs.get("best_epoch") or ctx.spec.epochs)
    seed = int(trial.user_attrs.get("seed", ctx.spec.seed))
    config = TrainConfig(
        epochs=epochs,
        batch_size=cfg.batch_size,
        seed=seed,
        device=ctx.device,
        keep="last",
        precision=str(trial.user_attrs.get("precision", "auto")),  # as the trial trained
    )
    result = train(model_spec, cfg.optim, X, y, None, None, config)
    return result.state, model_spec


def is_bundle(path: Path) -> bool:
    return (path / META).is_file()


def write_bundle(
    out: Path,
    weights: bytes,
    meta: dict,
    onnx_model: tuple[torch.nn.Module, torch.Tensor] | None = None,
) -> Path:
    """Write a complete bundle into a temporary folder, then rename it to ``out``.

    An existing ``out`` is replaced only if it is a bundle, and only once the new one is whole.
    """
    out = Path(out)
    if out.exists() and not (out.is_dir() and (is_bundle(out) or not any(out.iterdir()))):
        raise FishoptError(f"--out {out}: exists and is not a fishopt bundle; not replacing it")
    with atomic_dir(out, replace=True) as tmp:
        (tmp / WEIGHTS).write_bytes(weights)
        meta = {**meta, "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)}}
        if onnx_model is not None:
            model, X = onnx_model
            meta["onnx"] = write_onnx(model, meta["model"]["in_features"], tmp / "model.onnx", X)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / CARD).write_text(model_card(meta))
    return out


def export_best(
    name: str,
    settings: Settings,
    out: Path | None = None,
    *,
    retrain_model: bool = False,
    onnx: bool = False,
    data_flag: str | None = None,
) -> Exported:
    """Export a study's best trial as a bundle; returns where it went and its metadata."""
    st, ctx = open_existing(name, settings, data_flag, check=lambda s: best_trial(s, retrain_model))
    trial = best_trial(st, retrain_model)
    identity = st.user_attrs[studies.ATTR]
    trial_test = {
        "accuracy": trial.user_attrs.get("test_acc"),
        "macro_f1": trial.user_attrs.get("test_f1"),
    }
    if retrain_model:
        state, model_spec = retrain(ctx, trial)
        weights = artifacts.weights_bytes(state, model_spec)
        origin = "retrained"
    else:
        state, model_spec, weights = artifacts.fetch(trial, settings.artifacts_dir)
        origin = "artifact"
    model = load_model(model_spec, state)
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_spec.to_dict(),
        "classes": list(ctx.dataset.classes),
        "preprocessing": dict(ctx.dataset.preprocessing),
        "source": {
            "study": st.study_name,
            "trial": trial.number,
            "storage": settings.storage.masked,
            "params": dict(trial.params),
            "value": trial.value,
            "best_epoch": trial.user_attrs.get("best_epoch"),
            "seed": trial.user_attrs.get("seed"),
            "data_source": identity.get("data_source"),
            "data_fingerprint": identity["data_fingerprint"],
            "split": identity.get("split"),
        },
        "metrics": {
            "valid_f1": trial.value,
            "test": test_metrics(model, ctx),
            "trial_test": trial_test,
        },
        "weights_origin": origin,
        "versions": versions(),
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    target = Path(out) if out is not None else Path(f"{st.study_name}-bundle")
    onnx_model = (model, ctx.tensors.X_test.cpu()) if onnx else None
    path = write_bundle(target, weights, meta, onnx_model)
    return Exported(path, json.loads((path / META).read_text()))
