"""The training loop: it learns, it is deterministic, its hook can stop it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fishopt import data
from fishopt.training.model import MLPSpec
from fishopt.training.optim import OptimSpec
from fishopt.training.train import EpochRecord, TrainConfig, train


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, ...]:
    ds, _ = data.load(data.parse_source("digits"), Path("/nonexistent"))
    s = data.split(ds.y, (0.8, 0.2, 0.0), seed=0)
    X, y = torch.from_numpy(np.asarray(ds.X)), torch.from_numpy(ds.y)
    return X[s.train], y[s.train], X[s.valid], y[s.valid]


SPEC = MLPSpec(64, (64, 32), 10)


def test_learns_real_digits(digits) -> None:
    result = train(SPEC, OptimSpec("AdamW"), *digits, TrainConfig(epochs=8))
    assert result.best_valid_f1 > 0.9
    assert len(result.history) == 8
    first, last = result.history[0], result.history[-1]
    assert last.train_loss < first.train_loss
    assert result.best_valid_f1 == max(r.valid_f1 for r in result.history)
    assert result.history[result.best_epoch - 1].valid_f1 == result.best_valid_f1


def test_same_seed_same_result_other_seed_other_result(digits) -> None:
    a = train(SPEC, OptimSpec("Adam"), *digits, TrainConfig(epochs=3, seed=5))
    b = train(SPEC, OptimSpec("Adam"), *digits, TrainConfig(epochs=3, seed=5))
    c = train(SPEC, OptimSpec("Adam"), *digits, TrainConfig(epochs=3, seed=6))
    strip = lambda h: [(r.train_loss, r.valid_f1) for r in h]  # noqa: E731
    assert strip(a.history) == strip(b.history)
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert strip(a.history) != strip(c.history)


def test_dropout_and_batchnorm_are_deterministic_too(digits) -> None:
    spec = MLPSpec(64, (64,), 10, dropout=0.3, batch_norm=True)
    a = train(spec, OptimSpec("SGD", lr=0.05), *digits, TrainConfig(epochs=2, seed=1))
    b = train(spec, OptimSpec("SGD", lr=0.05), *digits, TrainConfig(epochs=2, seed=1))
    assert [r.valid_f1 for r in a.history] == [r.valid_f1 for r in b.history]


def test_global_rng_is_left_alone(digits) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train(SPEC, OptimSpec("Adam"), *digits, TrainConfig(epochs=1, seed=9))
    assert torch.equal(torch.rand(3), expected)


def test_hook_sees_every_epoch_and_can_stop_training(digits) -> None:
    seen: list[EpochRecord] = []

    class Stop(Exception):
        pass

    def hook(record: EpochRecord) -> None:
        seen.append(record)
        if record.epoch == 2:
            raise Stop

    with pytest.raises(Stop):
        train(SPEC, OptimSpec("Adam"), *digits, TrainConfig(epochs=10), on_epoch=hook)
    assert [r.epoch for r in seen] == [1, 2]
    assert all(0 <= r.valid_f1 <= 1 and r.seconds > 0 for r in seen)


def test_divergence_stops_early(digits) -> None:
    result = train(SPEC, OptimSpec("SGD", lr=1e6), *digits, TrainConfig(epochs=6))
    assert result.diverged
    assert len(result.history) < 6


def test_keep_last_returns_the_final_epoch_not_the_best(digits) -> None:
    config = TrainConfig(epochs=4, seed=2, keep="last")
    result = train(SPEC, OptimSpec("SGD", lr=0.5), *digits, config)
    assert result.best_epoch == 4
    assert result.best_valid_f1 == result.history[-1].valid_f1
    best = train(SPEC, OptimSpec("SGD", lr=0.5), *digits, TrainConfig(epochs=4, seed=2))
    assert [r.valid_f1 for r in best.history] == [r.valid_f1 for r in result.history]
    with pytest.raises(ValueError, match="keep"):
        train(SPEC, OptimSpec("SGD"), *digits, TrainConfig(epochs=1, keep="worst"))
