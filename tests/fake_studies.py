"""Studies with known answers, written straight into storage with ``optuna.create_trial``.

Training is not needed to test what a report or the dashboard says about trials, and known
values let the tests check the verdicts: "Good" and "Same" overlap, "Bad" is far below both.
Trials carry the same user attributes the objective writes (history, repeat, config, seed,
hidden, n_params, epoch_seconds, test_f1).
"""

from __future__ import annotations

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

OPTIMIZER_VALUES = {
    "Good": [0.90, 0.91, 0.92],
    "Same": [0.89, 0.91, 0.92],  # overlaps Good: the report must not call it different
    "Bad": [0.50, 0.52, 0.51],  # far below: significant even after Holm correction
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


def add(
    study, params: dict, dists: dict, value: float, hidden: list[int], repeat: int, config: str
) -> None:
    h = history(value)
    study.add_trial(
        optuna.trial.create_trial(
            params=params,
            distributions=dists,
            value=value,
            intermediate_values={r["epoch"]: r["valid_f1"] for r in h},
            user_attrs={
                "history": h,
                "repeat": repeat,
                "config": config,
                "seed": 1000 + repeat,
                "hidden": hidden,
                "n_params": 2655 * (hidden[0] if hidden else 3) + 100 * len(hidden),
                "epoch_seconds": 0.001 * (1 + sum(hidden)),
                "test_f1": value - 0.01,
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
        identity("optimizers", "optimizers", {"hidden": [256, 128]}, {"optimizer": names}, 3),
    )
    dists = {
        "optimizer": CategoricalDistribution(names),
        "repeat": CategoricalDistribution([0, 1, 2]),
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


BUILDERS = {"optimizers": _optimizers, "widths": _widths, "depth": _depth, "full": _full}


def build(storage_url: str, prefix: str = "", kinds: tuple[str, ...] = tuple(BUILDERS)) -> None:
    """Studies of the given kinds, named ``prefix + kind``."""
    for kind in kinds:
        BUILDERS[kind](storage_url, prefix + kind)
