"""The one training loop and its metrics.

The loop works on tensors already in memory (and on the device): each epoch is a random
permutation sliced into mini-batches, which is the seed's shuffled, drop_last DataLoader without
the per-sample Python overhead. Training metrics come from the running batch outputs; validation
is evaluated once per epoch. The loop knows nothing about Optuna: ``on_epoch`` is its only hook,
and a callback that raises (e.g. ``optuna.TrialPruned``) stops training.

Per-epoch bookkeeping stays on the device until one sync at the epoch's end (metrics from a
confusion count, not scikit-learn; the best weights cloned in place, copied to the CPU once at the
end), because with cheap trials that bookkeeping, not the maths, is what a study waits on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn

from fishopt.training.hardware import native_bf16
from fishopt.training.model import MLPSpec, build_mlp
from fishopt.training.optim import OptimSpec, build_optimizer

PRECISIONS = ("auto", "fp32", "bf16")
# With native bf16 the matmuls of a batch-50 step already gain more than the casts and the fp32
# optimizer step cost: on an AMD EPYC with AVX512-BF16, the trainer at 2655-256-128-9 measured
# bf16/fp32 1.26x at batch 50 and 1.7x at batch 256 (issue 12). Below 50 nothing was measured on
# such a CPU, so fp32 stays. Without native bf16, oneDNN emulates it and auto never picks it
# (emulated bf16 ran 2.6-3.3x slower than fp32; bench/NOTES.md, figure 7).
BF16_MIN_BATCH = 50


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 20
    batch_size: int = 50
    seed: int = 0
    drop_last: bool = True
    device: str = "cpu"
    precision: str = "auto"  # auto | fp32 | bf16: see resolve_precision
    # Which weights to return: the best validation epoch (search), or the last one (a final
    # retrain on train+valid, where no held-out data is left to choose an epoch with).
    keep: str = "best"


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
    precision: str = "fp32"  # what the forward/backward matmuls ran in


@dataclass(frozen=True)
class Metrics:
    accuracy: float
    macro_f1: float
    per_class_f1: list[float] = field(default_factory=list)
    confusion: list[list[int]] = field(default_factory=list)
    loss: float = float("nan")


def _accuracy_f1(true: torch.Tensor, pred: torch.Tensor, n_classes: int) -> tuple[float, float]:
    """Accuracy and macro-F1 from a confusion count on the tensors' device: one sync.

    Same definition as scikit-learn's ``f1_score(average="macro", zero_division=0)`` over all
    ``n_classes`` labels: per class 2TP / (2TP + FP + FN), 0 where a class is neither true nor
    predicted.
    """
    if len(true) == 0:
        return float("nan"), 0.0
    cm = torch.bincount(true * n_classes + pred, minlength=n_classes * n_classes)
    cm = cm.reshape(n_classes, n_classes).double()
    tp = cm.diagonal()
    denom = cm.sum(0) + cm.sum(1)
    f1 = torch.where(denom > 0, 2 * tp / denom.clamp_min(1), torch.zeros_like(tp))
    acc_f1 = torch.stack([tp.sum() / len(true), f1.mean()]).cpu()
    return float(acc_f1[0]), float(acc_f1[1])


def resolve_precision(precision: str, device: str, batch_size: int) -> str:
    """``auto`` -> bf16 only on a CPU with native bf16 (AMX/AVX512-BF16) and batches >= 50.

    Elsewhere fp32: emulated bf16 is slower than fp32, smaller batches were not measured, and
    on CUDA the 2655-input MLP is launch-bound, so autocast was not measured to pay there.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if precision != "auto":
        return precision
    cpu = torch.device(device).type == "cpu"
    return "bf16" if cpu and batch_size >= BF16_MIN_BATCH and native_bf16() else "fp32"


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
    if not detailed:
        acc, f1 = _accuracy_f1(y, logits.argmax(1), n_classes)
        return Metrics(acc, f1, loss=loss)
    pred = logits.argmax(1).cpu().numpy()
    true = y.cpu().numpy()
    acc = float((pred == true).mean()) if len(true) else float("nan")
    cm, per_class = confusion_f1(true, pred, n_classes)
    return Metrics(acc, float(per_class.mean()), [float(v) for v in per_class], cm.tolist(), loss)


def confusion_f1(
    true: np.ndarray, pred: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """The confusion matrix (rows true, columns predicted) and per-class F1 over labels
    ``0..n_classes-1``: the numbers of scikit-learn's ``confusion_matrix`` and ``f1_score(
    average=None, zero_division=0)``, computed as it does (2TP / (TP+FN + TP+FP) in float64),
    without its input validation, which cost more than the test split's evaluation itself
    (about 4 ms of every trial)."""
    cm = np.bincount(
        true.astype(np.int64) * n_classes + pred, minlength=n_classes * n_classes
    ).reshape(n_classes, n_classes)
    tp = np.diagonal(cm).astype(np.float64)
    denom = cm.sum(1).astype(np.float64) + cm.sum(0).astype(np.float64)
    per_class = np.divide(2.0 * tp, denom, out=np.zeros(n_classes), where=denom != 0)
    return cm, per_class


def train(
    model_spec: MLPSpec,
    optim_spec: OptimSpec,
    X_train: torch.Tensor,
    y_train: torch.Tensor,
    X_valid: torch.Tensor | None,
    y_valid: torch.Tensor | None,
    config: TrainConfig,
    on_epoch: Callable[[EpochRecord], None] | None = None,
) -> TrainResult:
    """Train, evaluate each epoch, keep the best epoch's weights.

    Without a validation set (``X_valid`` None: a final retrain on train+valid) the validation
    figures are nan and ``config.keep`` must be ``"last"``: there is nothing to choose with.

    The same spec, data and seed give the same result: initialisation and dropout draw from a
    forked global generator seeded with ``config.seed``, and batch order from a private one.
    With bf16 (``config.precision``), weights and optimizer state stay fp32; only the
    forward/backward matmuls run in bf16 under autocast.
    """
    device = torch.device(config.device)
    n = len(X_train)
    bs = min(config.batch_size, n)
    steps = n // bs if config.drop_last else math.ceil(n / bs)
    precision = resolve_precision(config.precision, config.device, bs)
    if config.keep not in ("best", "last"):
        raise ValueError(f"keep {config.keep!r}: expected 'best' or 'last'")
    keep_last = config.keep == "last"
    if (X_valid is None or y_valid is None) and not keep_last:
        raise ValueError("without a validation set only keep='last' can choose the weights")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices, device_type=device.type):
        if device.type == "cpu":
            # The CPU generator alone: torch.manual_seed also queues a seed for every
            # accelerator kind torch knows, formatting a traceback for each (about 1 ms, which
            # is a tenth of a tiny trial).
            torch.default_generator.manual_seed(config.seed)
        else:
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
            losses, preds, seen = [], [], []
            for step in range(steps):
                idx = perm[step * bs : (step + 1) * bs]
                xb, yb = X_train[idx], y_train[idx]
                with autocast:
                    logits = model(xb)
                    loss = nn.functional.cross_entropy(logits, yb)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                losses.append(loss.detach())
                preds.append(logits.detach().argmax(1))
                seen.append(yb)
            true_all = torch.cat(seen)
            sizes = torch.tensor([len(s) for s in seen], device=device, dtype=torch.float32)
            train_loss = float((torch.stack(losses).float() * sizes).sum()) / max(len(true_all), 1)
            train_acc, train_f1 = _accuracy_f1(true_all, torch.cat(preds), model_spec.n_classes)
            valid = (
                evaluate(model, X_valid, y_valid, model_spec.n_classes)
                if X_valid is not None and y_valid is not None
                else Metrics(math.nan, math.nan)
            )
            record = EpochRecord(
                epoch=epoch,
                train_loss=train_loss,
                train_acc=train_acc,
                train_f1=train_f1,
                valid_loss=valid.loss,
                valid_acc=valid.accuracy,
                valid_f1=valid.macro_f1,
                seconds=time.perf_counter() - t0,
            )
            history.append(record)
            if not keep_last and record.valid_f1 > best_f1:
                best_f1, best_epoch = record.valid_f1, epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if not math.isfinite(train_loss):
                # A diverged optimizer keeps its (poor) best score; more epochs would only burn
                # time on NaNs.
                diverged = True
            if on_epoch is not None:
                on_epoch(record)
            if diverged:
                break
    if keep_last:
        best_epoch, best_f1 = history[-1].epoch, history[-1].valid_f1
        best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert best_state is not None
    best_state = {k: v.cpu() for k, v in best_state.items()}
    return TrainResult(
        history,
        best_epoch,
        best_f1,
        best_state,
        diverged,
        time.perf_counter() - started,
        precision,
    )
