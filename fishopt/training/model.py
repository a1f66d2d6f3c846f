"""The one MLP builder: a spec (plain data) in, an ``nn.Sequential`` out. Nothing about Optuna."""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MLPSpec:
    """Everything needed to rebuild the network; stored with every exported model."""

    in_features: int
    hidden: tuple[int, ...]
    n_classes: int
    dropout: float = 0.0
    batch_norm: bool = False
    activation: str = "relu"

    def to_dict(self) -> dict:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> MLPSpec:
        return cls(
            in_features=int(d["in_features"]),
            hidden=tuple(int(w) for w in d["hidden"]),
            n_classes=int(d["n_classes"]),
            dropout=float(d.get("dropout", 0.0)),
            batch_norm=bool(d.get("batch_norm", False)),
            activation=str(d.get("activation", "relu")),
        )


def build_mlp(spec: MLPSpec) -> nn.Sequential:
    """Linear -> [BatchNorm] -> ReLU -> [Dropout] per hidden layer, then a linear head.

    He (Kaiming) initialisation, as the seed team used, because it keeps ReLU activations'
    variance constant with depth; biases start at zero. Initialisation draws from torch's global
    generator, so callers seed it (the trainer does, inside a forked RNG).
    """
    if spec.activation != "relu":
        raise ValueError(f"unsupported activation {spec.activation!r}")
    layers: list[nn.Module] = []
    width = spec.in_features
    for units in spec.hidden:
        linear = nn.Linear(width, units, bias=not spec.batch_norm)
        nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
        if linear.bias is not None:
            nn.init.zeros_(linear.bias)
        layers.append(linear)
        if spec.batch_norm:
            layers.append(nn.BatchNorm1d(units))
        layers.append(nn.ReLU())
        if spec.dropout > 0:
            layers.append(nn.Dropout(spec.dropout))
        width = units
    head = nn.Linear(width, spec.n_classes)
    nn.init.kaiming_normal_(head.weight, nonlinearity="linear")
    nn.init.zeros_(head.bias)
    layers.append(head)
    return nn.Sequential(*layers)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def macs_per_sample(spec: MLPSpec) -> int:
    """Multiply-accumulates of one forward pass: the cost model for benchmarks and reports."""
    widths = [spec.in_features, *spec.hidden, spec.n_classes]
    return sum(a * b for a, b in itertools.pairwise(widths))


def parameter_count(spec: MLPSpec) -> int:
    """Parameter count from the spec alone (no network built)."""
    widths = [spec.in_features, *spec.hidden, spec.n_classes]
    total = 0
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        hidden = i < len(spec.hidden)
        total += a * b + (0 if hidden and spec.batch_norm else b)
        if hidden and spec.batch_norm:
            total += 2 * b
    return total


def load_model(spec: MLPSpec, state: dict[str, torch.Tensor], device: str = "cpu") -> nn.Module:
    """The network ``spec`` describes with trained weights, ready for inference.

    Raises RuntimeError when the weights do not fit the spec (callers word the error).
    """
    model = build_mlp(spec)
    model.load_state_dict(state)
    return model.to(device).eval()
