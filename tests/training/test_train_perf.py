"""The trainer's speed work keeps its behaviour: same seed -> same result, scikit-learn's F1,
bf16 autocast within half an F1 point of fp32 at the smallest batch ``auto`` gives it, bf16 only
where the CPU has it natively, the precision recorded with each trial, and the same loop on CUDA
where there is a GPU."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
import torch
from needs import require
from sklearn.metrics import confusion_matrix, f1_score

from fishopt import data
from fishopt.search.context import Context, make_tensors
from fishopt.search.objective import objective
from fishopt.search.samplers import make_sampler
from fishopt.search.spec import StudySpec
from fishopt.training import train as train_module
from fishopt.training.hardware import native_bf16
from fishopt.training.model import MLPSpec
from fishopt.training.optim import OptimSpec
from fishopt.training.train import (
    BF16_MIN_BATCH,
    TrainConfig,
    _accuracy_f1,
    confusion_f1,
    resolve_precision,
    train,
)


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    """scikit-learn's digits with half held out, so one image is ~0.1 F1 points."""
    ds, _ = data.load(data.SourceSpec("digits"), cache_dir=None)
    sp = data.split(ds.y, (0.5, 0.5, 0.0), seed=0)
    X, y = torch.from_numpy(ds.X), torch.from_numpy(ds.y)
    return X[sp.train], y[sp.train], X[sp.valid], y[sp.valid]


def _run(
    digits, precision: str, seed: int = 5, epochs: int = 3, batch: int = 64, device: str = "cpu"
):
    spec = MLPSpec(64, (64, 32), 10, dropout=0.1)
    cfg = TrainConfig(
        epochs=epochs, batch_size=batch, seed=seed, precision=precision, device=device
    )
    tensors = [t.to(device) for t in digits]
    return train(spec, OptimSpec("AdamW", lr=3e-3), *tensors, cfg)


def _curves(result) -> list[dict]:
    return [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in result.history]


def test_same_seed_same_result_other_seed_differs(digits):
    a, b, c = _run(digits, "fp32"), _run(digits, "fp32"), _run(digits, "fp32", seed=6)
    assert _curves(a) == _curves(b)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert all(v.device.type == "cpu" for v in a.state.values())
    assert _curves(a) != _curves(c)


def test_bf16_validation_f1_within_half_a_point_of_fp32(digits):
    # The same trial (seed, data, batch order) at the smallest batch auto gives bf16, where the
    # rounding weighs most. 8 epochs: a trial near convergence, as a study's best trials are;
    # early epochs move by more than half a point per step in either precision. Runs on every
    # CPU: where bf16 is emulated it is slow but computes the same rounding.
    fp32 = _run(digits, "fp32", epochs=8, batch=BF16_MIN_BATCH)
    bf16 = _run(digits, "bf16", epochs=8, batch=BF16_MIN_BATCH)
    assert (fp32.precision, bf16.precision) == ("fp32", "bf16")
    assert fp32.best_valid_f1 > 0.9  # a trial that learned, so the comparison means something
    assert abs(bf16.best_valid_f1 - fp32.best_valid_f1) <= 0.005


def test_epoch_f1_is_scikit_learns_macro_f1():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 5, 200)
    pred = np.where(rng.random(200) < 0.6, true, rng.integers(0, 4, 200))  # class 4 never predicted
    acc, f1 = _accuracy_f1(torch.from_numpy(true), torch.from_numpy(pred), 6)  # class 5 absent
    expected = f1_score(true, pred, labels=range(6), average="macro", zero_division=0)
    assert f1 == pytest.approx(expected, abs=1e-12)
    assert acc == pytest.approx((true == pred).mean())


def test_test_split_metrics_are_scikit_learns_exactly():
    # The test split's confusion matrix and per-class F1 are stored with every trial: the same
    # numbers, bit for bit, as the scikit-learn calls they replace (absent and never-predicted
    # classes included).
    rng = np.random.default_rng(1)
    for _ in range(200):
        k, n = int(rng.integers(2, 10)), int(rng.integers(1, 120))
        true = rng.integers(0, k, n)
        pred = np.where(rng.random(n) < rng.random(), true, rng.integers(0, k - 1, n))
        cm, per_class = confusion_f1(true, pred, k)
        labels = list(range(k))
        expected = f1_score(true, pred, labels=labels, average=None, zero_division=0)
        assert (cm == confusion_matrix(true, pred, labels=labels)).all()
        assert per_class.tolist() == expected.tolist()
        assert float(per_class.mean()) == float(expected.mean())


def test_auto_precision_is_bf16_only_with_native_bf16_from_batch_50(monkeypatch):
    assert BF16_MIN_BATCH == 50  # measured: 1.26x at batch 50 on a native-bf16 EPYC (issue 12)
    for native in (True, False):
        monkeypatch.setattr(train_module, "native_bf16", lambda native=native: native)
        want = "bf16" if native else "fp32"
        assert resolve_precision("auto", "cpu", 50) == want
        assert resolve_precision("auto", "cpu", 512) == want
        assert resolve_precision("auto", "cpu", 49) == "fp32"  # not measured below 50
        assert resolve_precision("auto", "cuda", 512) == "fp32"
        assert resolve_precision("bf16", "cpu", 8) == "bf16"
        assert resolve_precision("fp32", "cpu", 512) == "fp32"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu", 50)


def test_this_cpu_gets_what_its_flags_allow(digits):
    result = _run(digits, "auto", epochs=1, batch=BF16_MIN_BATCH)
    assert result.precision == ("bf16" if native_bf16() else "fp32")


def test_each_trial_records_the_precision_it_trained_in(tmp_path):
    """The precision is part of a trial's result: a study trial stores what train() used."""
    ds, _ = data.load(data.SourceSpec("digits"), cache_dir=None)
    split = data.split(ds.y, (0.6, 0.4, 0.0), seed=0)
    spec = StudySpec(
        name="precision",
        description="",
        kind="custom",
        epochs=1,
        seed=0,
        repeats=1,
        n_trials=4,
        timeout=None,
        sampler={"name": "grid"},
        pruner={"name": "none"},
        fixed={"units": 32, "n_layers": 1},
        space={"batch_size": (32, 64)},  # either side of the bf16 threshold
    )
    ctx = Context(spec, ds, split, make_tensors(ds, split))
    study = optuna.create_study(
        storage=f"sqlite:///{tmp_path / 's.db'}",
        direction="maximize",
        sampler=make_sampler(spec),
    )
    study.optimize(objective(ctx), n_trials=2)
    assert sorted(t.params["batch_size"] for t in study.trials) == [32, 64]
    for t in study.trials:
        want = resolve_precision("auto", "cpu", t.params["batch_size"])
        assert t.user_attrs["precision"] == want


def test_cuda_trains_like_cpu(digits):
    """`--device cuda` stays tested wherever a GPU is: same loop, weights back on the CPU, and
    the same validation F1 as the CPU within a point (kernels differ, so not bit for bit)."""
    if not torch.cuda.is_available():
        require("gpu", "torch sees no CUDA device here")
    gpu, cpu = _run(digits, "auto", epochs=8, device="cuda"), _run(digits, "auto", epochs=8)
    assert gpu.precision == "fp32"  # auto keeps fp32 on CUDA
    assert all(v.device.type == "cpu" for v in gpu.state.values())
    assert gpu.best_valid_f1 > 0.9
    assert abs(gpu.best_valid_f1 - cpu.best_valid_f1) <= 0.01
