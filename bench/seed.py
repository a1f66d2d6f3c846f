"""The seed team's way, as the B side of figures 1 and 3: written as the notebook did it.

A per-sample ``Dataset`` behind a ``DataLoader`` (batch 50, shuffled), and after every epoch the
notebook's metrics over the whole training set and the validation set, each a second pass through
a per-sample loader with scikit-learn scores. Preprocessing is a single-process PIL loop: open,
grayscale, resize. These are deliberately not fishopt code paths: they are what fishopt replaces.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from sklearn.metrics import accuracy_score, f1_score
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from fishopt.training.model import MLPSpec, build_mlp


class FishDataset(TorchDataset):
    def __init__(self, X: torch.Tensor, y: torch.Tensor) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.X[i], self.y[i]


def _metrics(model: nn.Module, loader: DataLoader) -> tuple[float, float, float]:
    model.eval()
    losses, preds, trues = [], [], []
    with torch.no_grad():
        for xb, yb in loader:
            out = model(xb)
            losses.append(nn.functional.cross_entropy(out, yb).item() * len(yb))
            preds.extend(out.argmax(1).tolist())
            trues.extend(yb.tolist())
    loss = sum(losses) / len(trues)
    return loss, accuracy_score(trues, preds), f1_score(trues, preds, average="macro")


def train_seed_style(
    spec: MLPSpec,
    X_train: torch.Tensor,
    y_train: torch.Tensor,
    X_valid: torch.Tensor,
    y_valid: torch.Tensor,
    epochs: int,
    batch_size: int = 50,
    seed: int = 0,
) -> list[dict]:
    """The notebook loop, with the same model builder and optimizer (AdamW) as fishopt's."""
    torch.manual_seed(seed)
    model = build_mlp(spec)
    optimizer = torch.optim.AdamW(model.parameters())
    train_loader = DataLoader(FishDataset(X_train, y_train), batch_size=batch_size, shuffle=True)
    eval_train = DataLoader(FishDataset(X_train, y_train), batch_size=batch_size)
    eval_valid = DataLoader(FishDataset(X_valid, y_valid), batch_size=batch_size)
    history = []
    for epoch in range(epochs):
        model.train()
        for xb, yb in train_loader:
            optimizer.zero_grad()
            loss = nn.functional.cross_entropy(model(xb), yb)
            loss.backward()
            optimizer.step()
        tr = _metrics(model, eval_train)
        va = _metrics(model, eval_valid)
        history.append({"epoch": epoch + 1, "train": tr, "valid": va})
    return history


def preprocess_seed_style(files: list[Path], size: tuple[int, int] = (59, 45)) -> np.ndarray:
    """The notebook's preprocessing: one process, PIL open -> grayscale -> resize -> [0, 1]."""
    rows = []
    for path in files:
        image = Image.open(path).convert("L").resize(size)
        rows.append(np.asarray(image, dtype=np.float32).reshape(-1) / 255.0)
    return np.stack(rows)
