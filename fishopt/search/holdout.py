"""Selection apart from reporting: the validation split dealt into a selection half and a
reporting half, for the tuned optimizer protocol (why this design: ``search.tuned``).

The search scores trials, and picks each trial's best epoch, on the selection half; confirm and
defaults runs are scored on the reporting half, which nothing chose with. Both halves keep the
class mix of the validation split: each class's images are shuffled with the split seed and
dealt alternately, an odd one out going to the half that is smaller so far.
"""

from __future__ import annotations

import numpy as np
import torch

SALT = 0x5E1EC7  # the halves' own stream, apart from the split's, from the same split seed


def halves(y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices into ``y`` (validation labels): (selection, reporting), sorted, disjoint."""
    rng = np.random.default_rng([seed, SALT])
    select: list[np.ndarray] = []
    report: list[np.ndarray] = []
    n_select = n_report = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        a, b = idx[0::2], idx[1::2]
        if len(a) > len(b) and n_select > n_report:
            a, b = b, a  # the odd image goes to the half that is smaller so far
        select.append(a)
        report.append(b)
        n_select += len(a)
        n_report += len(b)
    return np.sort(np.concatenate(select)), np.sort(np.concatenate(report))


def split_valid(
    X: torch.Tensor, y: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(X, y) of the selection half, then of the reporting half, on the tensors' device."""
    select, report = halves(y.cpu().numpy(), seed)
    s = torch.from_numpy(select).to(y.device)
    r = torch.from_numpy(report).to(y.device)
    return X[s], y[s], X[r], y[r]
