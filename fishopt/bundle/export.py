"""Best trial -> model bundle: weights, metadata, model card, optional ONNX.

A bundle is a folder that needs no training code to use:

- ``model.safetensors``: weights only (nothing is ever unpickled);
- ``model.json``: the network spec, class names in order, preprocessing, where the model came
  from (study, trial, params, data fingerprint), versions, the weights' sha256 and its metrics
  (validation F1; test accuracy, macro-F1, per-class F1 and confusion matrix);
- ``MODEL_CARD.md``: the same for people; ``model.onnx`` when asked for, checked against torch.

The weights come from the artifact the study stored when the trial ran (``fishopt.artifacts``),
so exporting does not retrain; ``--retrain`` trains the best params again on train+valid.
The bundle is built in a temporary folder beside ``out`` and renamed into place.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import platform
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from fishopt import data
from fishopt.bundle import artifacts
from fishopt.config import Settings, mask_url
from fishopt.errors import FishoptError
from fishopt.search import objective as study
from fishopt.search import session as runner
from fishopt.search import space
from fishopt.search.spec import Range, StudySpec
from fishopt.search.storage import open_storage
from fishopt.training.model import MLPSpec, build_mlp
from fishopt.training.train import Metrics, TrainConfig, evaluate, logits_of, train

FORMAT = "fishopt-bundle"
FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
META = "model.json"
CARD = "MODEL_CARD.md"
ONNX = "model.onnx"
ONNX_TOLERANCE = 1e-4  # max |logit difference| allowed between onnxruntime and torch


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


# ------------------------------------------------------------------------------- study, trial


def load_study(name: str, storage_url: str) -> optuna.Study:
    storage = open_storage(storage_url, heartbeat=False)
    try:
        return optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = optuna.study.get_all_study_names(storage)
        raise FishoptError(
            f"no study {name!r} in {mask_url(storage_url)}; studies there: "
            f"{', '.join(names) or 'none'}"
        ) from None


def best_trial(st: optuna.Study, retrain: bool) -> FrozenTrial:
    """The best completed trial; without --retrain it must have stored its weights.

    Ties on the value go to a trial that stored weights, then to the earliest.
    """
    done = [
        t
        for t in st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None
    ]
    if not done:
        counts = {s.name: 0 for s in TrialState}
        for t in st.get_trials(deepcopy=False):
            counts[t.state.name] += 1
        seen = ", ".join(f"{v} {k.lower()}" for k, v in counts.items() if v) or "no trials"
        raise FishoptError(f"study {st.study_name!r} has no complete trials ({seen})")
    top = max(float(t.value) for t in done)  # type: ignore[arg-type]
    best = sorted(
        (t for t in done if t.value == top),
        key=lambda t: (artifacts.ATTR not in t.user_attrs, t.number),
    )[0]
    if not retrain and artifacts.ATTR not in best.user_attrs:
        raise FishoptError(
            f"study {st.study_name!r}: best trial {best.number} stored no weights (it ran "
            "without fishopt's keep-best hook); pass --retrain to train its params again"
        )
    return best


def spec_from_dict(d: dict) -> StudySpec:
    """Rebuild the StudySpec recorded in the study's user attribute."""
    d = dict(d)
    d["space"] = {k: Range(**v) if isinstance(v, dict) else tuple(v) for k, v in d["space"].items()}
    d["image_size"] = tuple(d["image_size"])
    d["split"] = tuple(d["split"])
    fixed = dict(d.get("fixed", {}))
    if isinstance(fixed.get("hidden"), list):
        fixed["hidden"] = tuple(fixed["hidden"])
    d["fixed"] = fixed
    return StudySpec(**d)


def load_context(st: optuna.Study, settings: Settings, data_flag: str | None) -> study.Context:
    """The study's data and split, refusing data whose fingerprint differs from the study's."""
    identity = st.user_attrs.get(study.ATTR)
    if identity is None:
        raise FishoptError(f"study {st.study_name!r} was not created by fishopt")
    spec = spec_from_dict(identity["spec"])
    recorded = identity.get("data_source", "")
    text = data_flag or ("digits" if recorded == "sklearn.datasets.load_digits" else recorded)
    if not data_flag and not (text == "digits" or Path(text).exists()):
        raise FishoptError(
            f"study {st.study_name!r} was run on {recorded}, which is not there any more; "
            "pass --data with the same images"
        )
    source = data.parse_source(text)
    ctx = runner.build_context(spec, source, settings).ctx
    if ctx.dataset.fingerprint != identity["data_fingerprint"]:
        raise FishoptError(
            f"--data {text}: fingerprint {ctx.dataset.fingerprint} differs from study "
            f"{st.study_name!r}'s {identity['data_fingerprint']}; pass the images it ran on"
        )
    return ctx


# ---------------------------------------------------------------------------------- metrics


def test_metrics(model: torch.nn.Module, ctx: study.Context) -> dict | None:
    t = ctx.tensors
    if not len(t.y_test):
        return None
    m: Metrics = evaluate(model, t.X_test, t.y_test, ctx.n_classes, detailed=True)
    return {
        "n": len(t.y_test),
        "accuracy": m.accuracy,
        "macro_f1": m.macro_f1,
        "per_class_f1": dict(zip(ctx.dataset.classes, m.per_class_f1, strict=True)),
        "confusion": m.confusion,
    }


def retrain(ctx: study.Context, trial: FrozenTrial) -> tuple[dict[str, torch.Tensor], MLPSpec]:
    """The trial's params trained again on train+valid for its best epoch count.

    The last epoch's weights are kept: the epoch count was chosen on the validation split
    during the search, and no held-out data is left to choose again (test stays untouched).
    """
    cfg = space.suggest(trial, ctx.spec)  # a FrozenTrial answers suggest_* with its params
    model_spec = MLPSpec(ctx.in_features, cfg.hidden, ctx.n_classes, cfg.dropout, cfg.batch_norm)
    t = ctx.tensors
    X = torch.cat([t.X_train, t.X_valid])
    y = torch.cat([t.y_train, t.y_valid])
    epochs = int(trial.user_attrs.get("best_epoch") or ctx.spec.epochs)
    seed = int(trial.user_attrs.get("seed", ctx.spec.seed))
    config = TrainConfig(
        epochs=epochs, batch_size=cfg.batch_size, seed=seed, device=ctx.device, keep="last"
    )
    result = train(model_spec, cfg.optim, X, y, X, y, config)
    return result.state, model_spec


# ------------------------------------------------------------------------------------- ONNX


def write_onnx(model: torch.nn.Module, in_features: int, path: Path, X: torch.Tensor) -> dict:
    """Export to ONNX and check onnxruntime agrees with torch on ``X`` (the test split)."""
    try:
        import onnxruntime as ort
    except ImportError:
        msg = "--onnx needs onnx and onnxruntime: pip install 'fishopt[onnx]'"
        raise FishoptError(msg) from None
    model = model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (torch.zeros(1, in_features),),
            str(path),
            input_names=["features"],
            output_names=["logits"],
            dynamic_axes={"features": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    expected = logits_of(model, X).numpy()
    got = session.run(None, {"features": X.numpy().astype(np.float32)})[0]
    diff = float(np.abs(got - expected).max()) if len(X) else 0.0
    agree = int((got.argmax(1) == expected.argmax(1)).sum()) if len(X) else 0
    if diff > ONNX_TOLERANCE or agree != len(X):
        raise FishoptError(
            f"model.onnx disagrees with torch on the test split: max |logit diff| {diff:.2e}, "
            f"{agree}/{len(X)} same class; not exported"
        )
    return {
        "file": ONNX,
        "sha256": sha256_file(path),
        "checked_on": len(X),
        "max_abs_logit_diff": diff,
        "same_class": agree,
        "onnxruntime": ort.__version__,
    }


# ------------------------------------------------------------------------------------ writing


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


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
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / WEIGHTS).write_bytes(weights)
        meta = {**meta, "weights": {"file": WEIGHTS, "sha256": sha256_file(tmp / WEIGHTS)}}
        if onnx_model is not None:
            model, X = onnx_model
            meta["onnx"] = write_onnx(model, meta["model"]["in_features"], tmp / ONNX, X)
        (tmp / META).write_text(json.dumps(meta, indent=2) + "\n")
        (tmp / CARD).write_text(model_card(meta))
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, old / out.name)
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _split_text(split: object) -> str:
    if not isinstance(split, dict) or "sizes" not in split:
        return str(split)
    sizes = "/".join(map(str, split["sizes"]))
    fractions = "/".join(f"{f:g}" for f in split.get("fractions", []))
    return f"train/valid/test {sizes} images (fractions {fractions}, seed {split.get('seed')})"


def model_card(meta: dict) -> str:
    src, m, metrics = meta["source"], meta["model"], meta["metrics"]
    pre = meta["preprocessing"]
    hidden = "-".join(map(str, m["hidden"])) or "none"
    lines = [
        f"# Model card: {src['study']} trial {src['trial']}",
        "",
        f"An MLP image classifier ({m['in_features']}-{hidden}-{m['n_classes']}, "
        f"{m['activation']}, dropout {m['dropout']}, batch norm {m['batch_norm']}) chosen by "
        f"fishopt's Optuna study `{src['study']}` as its best trial "
        f"(validation macro-F1 {_f(metrics['valid_f1'])}).",
        "",
        "## Use",
        "",
        "```bash",
        "fishopt predict BUNDLE photo.png     # or: fishopt serve BUNDLE",
        "```",
        "",
        f"Input: any image; it is converted to grayscale, resized to {pre['width']}x"
        f"{pre['height']} ({pre.get('resample', 'bilinear')}), scaled to [0, 1] and flattened "
        f"({m['in_features']} features). Transparent pixels are composited on white.",
        "",
        "Classes, in output order: " + ", ".join(f"`{c}`" for c in meta["classes"]) + ".",
        "",
        "## Where it came from",
        "",
        f"- study `{src['study']}`, trial {src['trial']}, seed {src['seed']}, "
        f"best epoch {src['best_epoch']}",
        "- params: " + ", ".join(f"`{k}={v}`" for k, v in src["params"].items()),
        f"- data: {src['data_source']} (fingerprint `{src['data_fingerprint']}`), split "
        f"{_split_text(src['split'])}",
        f"- weights: {meta['weights_origin']}; sha256 `{meta['weights']['sha256']}`",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "## Metrics",
        "",
    ]
    test = metrics.get("test")
    if test is None:
        lines.append("No held-out test split (the study's split has no test part).")
    else:
        lines += [
            f"Held-out test split ({test['n']} images): accuracy {_f(test['accuracy'])}, "
            f"macro-F1 {_f(test['macro_f1'])}.",
            "",
            "| class | F1 |",
            "|---|---|",
            *(f"| {c} | {_f(v)} |" for c, v in test["per_class_f1"].items()),
            "",
            "Confusion matrix (rows: true class, columns: predicted, in class order):",
            "",
            "```",
            *(" ".join(f"{v:4d}" for v in row) for row in test["confusion"]),
            "```",
        ]
    trial_test = metrics.get("trial_test")
    if meta["weights_origin"] == "retrained" and trial_test:
        lines += [
            "",
            f"Retrained on train+valid for {src['best_epoch']} epochs. The trial as found "
            f"scored test accuracy {_f(trial_test.get('accuracy'))}, macro-F1 "
            f"{_f(trial_test.get('macro_f1'))}.",
        ]
    if meta.get("onnx"):
        o = meta["onnx"]
        lines += [
            "",
            f"`model.onnx` agrees with torch on {o['same_class']}/{o['checked_on']} test images "
            f"(max |logit difference| {o['max_abs_logit_diff']:.2e}).",
        ]
    lines += [
        "",
        "## Limits",
        "",
        "Trained only on the images above; photos unlike them (other species, other "
        "backgrounds) get confident but meaningless answers. Test figures on a small split "
        "are noisy.",
        "",
    ]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------- export


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
    st = load_study(name, settings.storage)
    trial = best_trial(st, retrain_model)
    ctx = load_context(st, settings, data_flag)
    identity = st.user_attrs[study.ATTR]
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
    model = build_mlp(model_spec)
    model.load_state_dict(state)
    model.eval()
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "model": model_spec.to_dict(),
        "classes": list(ctx.dataset.classes),
        "preprocessing": dict(ctx.dataset.preprocessing),
        "source": {
            "study": st.study_name,
            "trial": trial.number,
            "storage": mask_url(settings.storage),
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
