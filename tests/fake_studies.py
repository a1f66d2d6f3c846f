"""Studies with known answers, written straight into storage with ``optuna.create_trial``.

Training is not needed to test what a report or the dashboard says about trials, and known
values let the tests check the verdicts: "Good" and "Same" overlap, "Bad" is far below both.
Trials carry the same user attributes the objective writes (history, repeat, config, seed,
hidden, n_params, epoch_seconds, test_f1, test_acc, test_confusion).

The tuned study follows the data contract of kind "optimizers-tuned": search trials (phase
"search") and confirm re-runs of each optimizer's best setting (phase "confirm", "confirm_of",
"repeat" r with the same seed for every optimizer). There tuning turns the order around: "Bad"
at defaults becomes the clear winner, and "Good" and "Same" stay inseparable.
"""

from __future__ import annotations

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

OPTIMIZER_VALUES = {  # five seeds: three are too few for any rank test to separate two arms
    "Good": [0.90, 0.91, 0.92, 0.915, 0.905],
    "Same": [0.89, 0.91, 0.92, 0.90, 0.915],  # overlaps Good: the report must not call it different
    "Bad": [0.50, 0.52, 0.51, 0.53, 0.49],  # far below: the procedure must say so
}
EPOCHS = 5


def identity(name: str, kind: str, fixed: dict, space: dict, repeats: int) -> dict:
    spec = {
        "name": name,
        "kind": kind,
        "description": f"test study of kind {kind}",
        "question": f"What does the {kind} test study ask?",
        "epochs": EPOCHS,
        "seed": 0,
        "repeats": repeats,
        "sampler": {"name": "grid"},
        "pruner": {"name": "none"},
        "fixed": fixed,
        "space": space,
        "split": [0.9, 0.09, 0.01],
    }
    return {
        "spec": spec,
        "spec_fingerprint": "f" * 16,
        "data_fingerprint": "d" * 16,
        "data_source": "synthetic fish (test)",
        "classes": ["Trout", "Shrimp", "Sea Bass"],
        "preprocessing": {"width": 59, "height": 45, "grayscale": True},
        "split": {"fractions": [0.9, 0.09, 0.01], "seed": 0, "sizes": [90, 9, 1]},
        "in_features": 2655,
    }


def history(final: float, epochs: int = EPOCHS) -> list[dict]:
    """A curve rising to ``final``: validation reaches 90% of it at epoch 3 of 5."""
    out = []
    for e in range(1, epochs + 1):
        frac = min(1.0, 0.5 + 0.15 * e)  # 0.65, 0.8, 0.95, 1.0, 1.0
        out.append(
            {
                "epoch": e,
                "train_loss": 2.0 / e,
                "train_acc": min(1.0, final * frac + 0.05),
                "train_f1": min(1.0, final * frac + 0.04),
                "valid_loss": 2.2 / e,
                "valid_acc": final * frac,
                "valid_f1": final * frac,
                "seconds": 0.01,
            }
        )
    return out


def confusion(value: float) -> list[list[int]]:
    """A 27-image, 3-class test confusion matrix whose accuracy is about ``value``."""
    c = round(9 * value)
    return [[c, 9 - c, 0], [0, c, 9 - c], [9 - c, 0, c]]


def add(
    study,
    params: dict,
    dists: dict,
    value: float,
    hidden: list[int],
    repeat: int,
    config: str,
    *,
    state: optuna.trial.TrialState = optuna.trial.TrialState.COMPLETE,
    extra: dict | None = None,
) -> None:
    h = history(value)
    cm = confusion(value)
    done = state == optuna.trial.TrialState.COMPLETE
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=dists,
            value=value if done else None,
            state=state,
            intermediate_values={r["epoch"]: r["valid_f1"] for r in h}
            if state != optuna.trial.TrialState.FAIL
            else {},
            user_attrs={
                **(extra or {}),
                "history": h,
                "repeat": repeat,
                "config": config,
                "seed": 1000 + repeat,
                "hidden": hidden,
                "n_params": 2655 * (hidden[0] if hidden else 3) + 100 * len(hidden),
                "epoch_seconds": 0.001 * (1 + sum(hidden)),
                "test_f1": float(np.trace(cm) / 27 - 0.01),
                "test_acc": float(np.trace(cm) / 27),
                "test_confusion": cm,
                "best_epoch": EPOCHS,
                "epochs_run": EPOCHS,
            },
        )
    )


def create(storage_url: str, name: str, ident: dict | None) -> optuna.Study:
    st = optuna.create_study(storage=storage_url, study_name=name, direction="maximize")
    if ident is not None:
        st.set_user_attr("fishopt", ident)
    return st


def _optimizers(storage_url: str, name: str) -> None:
    names = list(OPTIMIZER_VALUES)
    st = create(
        storage_url,
        name,
        identity("optimizers", "optimizers", {"hidden": [256, 128]}, {"optimizer": names}, 5),
    )
    dists = {
        "optimizer": CategoricalDistribution(names),
        "repeat": CategoricalDistribution([0, 1, 2, 3, 4]),
    }
    for opt, values in OPTIMIZER_VALUES.items():
        for r, v in enumerate(values):
            add(st, {"optimizer": opt, "repeat": r}, dists, v, [256, 128], r, opt)


def _widths(storage_url: str, name: str) -> None:
    st = create(
        storage_url,
        name,
        identity(
            "widths",
            "widths",
            {"optimizer": "AdamW"},
            {"units": [16, 64, 256], "n_layers": [1, 3]},
            2,
        ),
    )
    dists = {
        "n_units_l0": CategoricalDistribution([16, 64, 256]),
        "n_layers": CategoricalDistribution([1, 3]),
        "repeat": CategoricalDistribution([0, 1]),
    }
    for units in (16, 64, 256):
        for layers in (1, 3):
            for r in range(2):
                v = 0.5 + 0.1 * (units.bit_length() - 4) / 2 + 0.01 * layers + 0.01 * r
                add(
                    st,
                    {"n_units_l0": units, "n_layers": layers, "repeat": r},
                    dists,
                    v,
                    [units] * layers,
                    r,
                    f"w{units}x{layers}",
                )


def _depth(storage_url: str, name: str) -> None:
    st = create(
        storage_url,
        name,
        identity("depth", "depth", {"units": 256}, {"n_layers": [0, 1, 2, 3]}, 2),
    )
    dists = {
        "n_layers": CategoricalDistribution([0, 1, 2, 3]),
        "repeat": CategoricalDistribution([0, 1]),
    }
    for layers in range(4):
        for r in range(2):
            add(
                st,
                {"n_layers": layers, "repeat": r},
                dists,
                0.6 + 0.05 * layers + 0.01 * r,
                [256] * layers,
                r,
                f"d{layers}",
            )


def _full(storage_url: str, name: str) -> None:
    st = create(
        storage_url,
        name,
        identity("full", "full", {}, {"lr": {"low": 1e-4, "high": 1e-1, "log": True}}, 1),
    )
    dists = {
        "lr": FloatDistribution(1e-4, 1e-1, log=True),
        "optimizer": CategoricalDistribution(["Adam", "SGD"]),
        "n_layers": IntDistribution(1, 3),
    }
    for i in range(8):
        lr = 10 ** (-4 + 3 * i / 7)
        params = {"lr": lr, "optimizer": ["Adam", "SGD"][i % 2], "n_layers": 1 + i % 3}
        add(st, params, dists, 0.9 - abs(i - 4) * 0.05, [128] * params["n_layers"], 0, f"f{i}")


TUNED_SPACES = {
    "Good": {"lr": {"low": 1e-5, "high": 1e-1, "log": True}},
    "Same": {
        "lr": {"low": 1e-5, "high": 1e-1, "log": True},
        "momentum": {"low": 0.0, "high": 0.99, "log": False},
    },
    "Bad": {"lr": {"low": 1e-5, "high": 1e-1, "log": True}},
}
# optimizer -> (search trials: (lr, value); confirm values by repeat, re-running the best)
TUNED_SEARCH = {
    "Good": [(1e-4, 0.85), (1e-3, 0.93), (1e-2, 0.80), (3e-5, 0.70)],
    "Same": [(2e-4, 0.84), (1e-3, 0.92), (1e-2, 0.79), (3e-5, 0.72)],
    "Bad": [(1e-4, 0.60), (1e-3, 0.75), (1e-2, 0.90), (0.098, 0.95)],  # best at the range's edge
}
TUNED_CONFIRM = {
    "Good": [0.930, 0.925, 0.935],
    "Same": [0.931, 0.920, 0.930],  # inseparable from Good
    "Bad": [0.955, 0.960, 0.950],  # clearly ahead once tuned
}


def _tuned(storage_url: str, name: str, partial: bool = False) -> None:
    """Search + confirm trials; ``partial``: Same's search is still running and one of its
    confirm runs failed, so the report must say what is missing."""
    names = list(TUNED_SPACES)
    ident = identity("optimizers-tuned", "optimizers-tuned", {"hidden": [256, 128]}, {}, 3)
    ident["spec"]["tuned"] = {
        "trials_per_optimizer": 4,
        "confirm_seeds": 3,
        "optimizers": names,
        "spaces": TUNED_SPACES,
    }
    st = create(storage_url, name, ident)
    for opt in names:
        space = TUNED_SPACES[opt]
        dists = {
            "optimizer": CategoricalDistribution(names),
            **{p: FloatDistribution(r["low"], r["high"], log=r["log"]) for p, r in space.items()},
        }
        best = None
        for i, (lr, v) in enumerate(TUNED_SEARCH[opt]):
            params = {
                "optimizer": opt,
                "lr": lr,
                **({"momentum": 0.9} if "momentum" in space else {}),
            }
            state = optuna.trial.TrialState.COMPLETE
            if opt == "Same" and i == 0:
                state = optuna.trial.TrialState.PRUNED  # still counts: it spent budget
            if partial and opt == "Same" and i == 3:
                state = optuna.trial.TrialState.FAIL
            add(st, params, dists, v, [256, 128], 0, opt, state=state, extra={"phase": "search"})
            if state == optuna.trial.TrialState.COMPLETE and (best is None or v > best[1]):
                best = (len(st.trials) - 1, v, params)
        assert best is not None
        for r, v in enumerate(TUNED_CONFIRM[opt]):
            state = optuna.trial.TrialState.COMPLETE
            if partial and opt == "Same" and r == 2:
                state = optuna.trial.TrialState.FAIL
            extra = {"phase": "confirm", "confirm_of": best[0]}
            add(st, best[2], dists, v, [256, 128], r, opt, state=state, extra=extra)


def _tuned_partial(storage_url: str, name: str) -> None:
    _tuned(storage_url, name, partial=True)


BUILDERS = {
    "optimizers": _optimizers,
    "widths": _widths,
    "depth": _depth,
    "full": _full,
    "optimizers-tuned": _tuned,
    "optimizers-tuned-partial": _tuned_partial,
}


def build(
    storage_url: str,
    prefix: str = "",
    kinds: tuple[str, ...] = ("optimizers", "widths", "depth", "full"),
) -> None:
    """Studies of the given kinds, named ``prefix + kind``."""
    for kind in kinds:
        BUILDERS[kind](storage_url, prefix + kind)
