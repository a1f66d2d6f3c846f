"""The stratified train/valid/test split, from a split seed."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fishopt.errors import FishoptError


@dataclass(frozen=True)
class Split:
    train: np.ndarray
    valid: np.ndarray
    test: np.ndarray
    fractions: tuple[float, float, float] = (0.9, 0.09, 0.01)
    seed: int = 0

    def describe(self) -> dict:
        return {
            "fractions": list(self.fractions),
            "seed": self.seed,
            "sizes": [len(self.train), len(self.valid), len(self.test)],
        }


def split(y: np.ndarray, fractions: Sequence[float] = (0.9, 0.09, 0.01), seed: int = 0) -> Split:
    """Stratified train/valid/test indices from a split seed.

    Each non-empty split gets at least one image per class, so tiny data sets still yield a
    macro-F1 over every class rather than a stratification error.
    """
    from sklearn.model_selection import train_test_split

    f_train, f_valid, f_test = (float(f) for f in fractions)
    if min(f_train, f_valid) <= 0 or f_test < 0 or abs(f_train + f_valid + f_test - 1) > 1e-6:
        raise FishoptError(f"split {list(fractions)}: need train, valid > 0, test >= 0, sum 1")
    n, n_classes = len(y), int(y.max()) + 1
    counts = np.bincount(y, minlength=n_classes)
    need = 3 if f_test > 0 else 2
    if counts.min() < need:
        raise FishoptError(
            f"class {int(counts.argmin())} has {int(counts.min())} images; "
            f"each class needs at least {need} for a stratified split"
        )
    idx = np.arange(n)
    rest, test = idx, idx[:0]
    if f_test > 0:
        n_test = min(max(n_classes, round(n * f_test)), n - 2 * n_classes)
        rest, test = train_test_split(idx, test_size=n_test, stratify=y, random_state=seed)
    n_valid = min(max(n_classes, round(n * f_valid)), len(rest) - n_classes)
    train, valid = train_test_split(
        rest, test_size=n_valid, stratify=y[rest], random_state=seed + 1
    )
    return Split(np.sort(train), np.sort(valid), np.sort(test), (f_train, f_valid, f_test), seed)
