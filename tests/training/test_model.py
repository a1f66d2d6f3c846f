"""The MLP builder and the optimizer registry."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fishopt.training import optim
from fishopt.training.model import MLPSpec, build_mlp, count_parameters, parameter_count


def test_layers_follow_the_spec() -> None:
    model = build_mlp(MLPSpec(2655, (256, 128), 9))
    kinds = [type(m) for m in model]
    assert kinds == [nn.Linear, nn.ReLU, nn.Linear, nn.ReLU, nn.Linear]
    assert model(torch.zeros(4, 2655)).shape == (4, 9)
    with_extras = build_mlp(MLPSpec(20, (8,), 3, dropout=0.3, batch_norm=True))
    assert [type(m) for m in with_extras] == [
        nn.Linear,
        nn.BatchNorm1d,
        nn.ReLU,
        nn.Dropout,
        nn.Linear,
    ]
    assert [type(m) for m in build_mlp(MLPSpec(20, (), 3))] == [nn.Linear]


def test_he_initialisation() -> None:
    torch.manual_seed(0)
    layer = build_mlp(MLPSpec(2655, (512,), 9))[0]
    expected = (2 / 2655) ** 0.5
    assert abs(layer.weight.std().item() - expected) / expected < 0.05
    assert torch.all(layer.bias == 0)


@pytest.mark.parametrize(
    "s",
    [
        MLPSpec(2655, (256, 128), 9),
        MLPSpec(64, (32, 16, 8), 10, batch_norm=True),
        MLPSpec(10, (), 2),
    ],
)
def test_parameter_count_matches_torch(s: MLPSpec) -> None:
    assert parameter_count(s) == count_parameters(build_mlp(s))


@pytest.mark.parametrize("name", list(optim.OPTIMIZERS))
def test_every_registered_optimizer_steps_and_uses_torch_default_lr(name: str) -> None:
    model = build_mlp(MLPSpec(6, (5,), 3))
    opt = optim.build_optimizer(optim.OptimSpec(name), model.parameters())
    assert opt.param_groups[0]["lr"] == optim.default_lr(name)
    before = [p.detach().clone() for p in model.parameters()]
    loss = nn.functional.cross_entropy(model(torch.randn(8, 6)), torch.randint(0, 3, (8,)))
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_options_are_passed_only_where_accepted() -> None:
    model = build_mlp(MLPSpec(6, (5,), 3))
    sgd = optim.build_optimizer(optim.OptimSpec("SGD", lr=0.1, momentum=0.9), model.parameters())
    assert sgd.param_groups[0]["momentum"] == 0.9 and sgd.param_groups[0]["lr"] == 0.1
    adam = optim.build_optimizer(optim.OptimSpec("Adam", momentum=0.9), model.parameters())
    assert "momentum" not in adam.param_groups[0]


def test_sparse_adam_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="sparse gradients"):
        optim.check_name("SparseAdam")
