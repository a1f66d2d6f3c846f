"""The one training loop and its metrics.

The loop works on tensors already in memory (and on the device): each epoch is a random
permutation sliced into mini-batches, which is the seed's shuffled, drop_last DataLoader without
the per-sample Python overhead. Training metrics come from the running batch outputs; validation
is evaluated once per epoch. The loop knows nothing about Optuna: ``on_epoch`` is its only hook,
and a callback that raises (e.g. ``optuna.TrialPruned``) stops training.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score
from torch import nn

from fishopt.model import MLPSpec, build_mlp
from fishopt.optim import OptimSpec, build_optimizer


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 50
    seed: int = 0
    drop_last: bool = True
    device: str = "cpu"


@dataclass(frozen=True)
class EpochRecord:
    epoch: int  # 1-based
    train_loss: float
    train_acc: float
    train_f1: float
    valid_loss: float
    valid_acc: float
    valid_f1: float
    seconds: float

    def to_dict(self) -> dict:
        return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass
class TrainResult:
    history: list[EpochRecord]
    best_epoch: int
    best_valid_f1: float
    state: dict[str, torch.Tensor]  # weights of the best epoch, on the CPU
    diverged: bool = False
    seconds: float = 0.0


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    macro_f1: float
    per_class_f1: list[float] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    loss: float = float("nan")


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> float:
    return float(
        f1_score(y_true, y_pred, labels=range(n_classes), average="macro", zero_division=0)
    )


@torch.no_grad()
def logits_of(model: nn.Module, X: torch.Tensor, batch: int = 8192) -> torch.Tensor:
    model.eval()
    return (
        torch.cat([model(X[i : i + batch]) for i in range(0, len(X), batch)])
        if len(X)
        else torch.empty(0)
    )


def evaluate(
    model: nn.Module, X: torch.Tensor, y: torch.Tensor, n_classes: int, detailed: bool = False
) -> Metrics:
    """Accuracy, macro-F1 and loss; with ``detailed``, per-class F1 and the confusion matrix."""
    logits = logits_of(model, X)
    loss = float(nn.functional.cross_entropy(logits, y)) if len(y) else float("nan")
    pred = logits.argmax(1).cpu().numpy()
    true = y.cpu().numpy()
    acc = float((pred == true).mean()) if len(true) else float("nan")
    if not detailed:
        return Metrics(acc, macro_f1(true, pred, n_classes), loss=loss)
    labels = list(range(n_classes))
    per_class = f1_score(true, pred, labels=labels, average=None, zero_division=0)
    cm = confusion_matrix(true, pred, labels=labels)
    return Metrics(acc, float(per_class.mean()), [float(v) for v in per_class], cm.tolist(), loss)


def train(
    model_spec: MLPSpec,
    optim_spec: OptimSpec,
    X_train: torch.Tensor,
    y_train: torch.Tensor,
    X_valid: torch.Tensor,
    y_valid: torch.Tensor,
    config: TrainConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train, evaluate each epoch, keep the best epoch's weights.

    The same spec, data and seed give the same result: initialisation and dropout draw from a
    forked global generator seeded with ``config.seed``, and batch order from a private one.
    """
    device = torch.device(config.device)
    n = len(X_train)
    bs = min(config.batch_size, n)
    steps = n // bs if config.drop_last else math.ceil(n / bs)
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, device_type=device.type):
        torch.manual_seed(config.seed)
        model = build_mlp(model_spec).to(device)
        optimizer = build_optimizer(optim_spec, model.parameters())
        order_gen = torch.Generator(device=device).manual_seed(config.seed)
        history: list[EpochRecord] = []
        best_f1, best_epoch, best_state = -1.0, 0, None
        diverged = False
        started = time.perf_counter()
        for epoch in range(1, config.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=order_gen, device=device)
            loss_sum = torch.zeros((), device=device)
            preds, seen = [], []
            for step in range(steps):
                idx = perm[step * bs : (step + 1) * bs]
                xb, yb = X_train[idx], y_train[idx]
                logits = model(xb)
                loss = nn.functional.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.detach() * len(idx)
                preds.append(logits.detach().argmax(1))
                seen.append(yb)
            count = sum(len(s) for s in seen)
            train_loss = float(loss_sum) / max(count, 1)
            pred_np = torch.cat(preds).cpu().numpy()
            true_np = torch.cat(seen).cpu().numpy()
            valid = evaluate(model, X_valid, y_valid, model_spec.n_classes)
            record = EpochRecord(
                epoch=epoch,
                train_loss=train_loss,
                train_acc=float((pred_np == true_np).mean()),
                train_f1=macro_f1(true_np, pred_np, model_spec.n_classes),
                valid_loss=valid.loss,
                valid_acc=valid.accuracy,
                valid_f1=valid.macro_f1,
                seconds=time.perf_counter() - t0,
            )
            history.append(record)
            if record.valid_f1 > best_f1:
                best_f1, best_epoch = record.valid_f1, epoch
                best_state = copy.deepcopy(
                    {k: v.detach().cpu() for k, v in model.state_dict().items()}
                )
            if not math.isfinite(train_loss):
                # A diverged optimizer keeps its (poor) best score; more epochs would only burn
                # time on NaNs.
                diverged = True
            if on_epoch is not None:
                on_epoch(record)
            if diverged:
                break
    assert best_state is not None
    return TrainResult(
        history, best_epoch, best_f1, best_state, diverged, time.perf_counter() - started
    )
