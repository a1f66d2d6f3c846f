"""The trainer's speed work keeps its behaviour: same seed -> same result, scikit-learn's F1,
bf16 autocast within half an F1 point of fp32, and bf16 only where the CPU has it natively."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from fishopt import data
from fishopt.training.hardware import native_bf16
from fishopt.training.model import MLPSpec
from fishopt.training.optim import OptimSpec
from fishopt.training.train import TrainConfig, _accuracy_f1, resolve_precision, train


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    """scikit-learn's digits with half held out, so one image is ~0.1 F1 points."""
    ds, _ = data.load(data.SourceSpec("digits"), cache_dir=None)
    sp = data.split(ds.y, (0.5, 0.5, 0.0), seed=0)
    X, y = torch.from_numpy(ds.X), torch.from_numpy(ds.y)
    return X[sp.train], y[sp.train], X[sp.valid], y[sp.valid]


def _run(digits, precision: str, seed: int = 5, epochs: int = 3):
    spec = MLPSpec(64, (64, 32), 10, dropout=0.1)
    cfg = TrainConfig(epochs=epochs, batch_size=64, seed=seed, precision=precision)
    return train(spec, OptimSpec("AdamW", lr=3e-3), *digits, cfg)


def _curves(result) -> list[dict]:
    return [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in result.history]


def test_same_seed_same_result_other_seed_differs(digits):
    a, b, c = _run(digits, "fp32"), _run(digits, "fp32"), _run(digits, "fp32", seed=6)
    assert _curves(a) == _curves(b)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert all(v.device.type == "cpu" for v in a.state.values())
    assert _curves(a) != _curves(c)


def test_bf16_validation_f1_within_half_a_point_of_fp32(digits):
    # 8 epochs: a trial near convergence, as a study's best trials are; early epochs move by
    # more than half a point per step in either precision.
    fp32, bf16 = _run(digits, "fp32", epochs=8), _run(digits, "bf16", epochs=8)
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


def test_auto_precision_is_bf16_only_with_native_bf16_and_a_large_batch():
    assert resolve_precision("auto", "cpu", 50) == "fp32"
    assert resolve_precision("auto", "cpu", 512) == ("bf16" if native_bf16() else "fp32")
    assert resolve_precision("auto", "cuda", 512) == "fp32"
    assert resolve_precision("bf16", "cpu", 50) == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("fp16", "cpu", 50)
