"""The stratified train/valid/test split, from a split seed, optionally keeping groups whole.

Groups are the originals of an augmented set: copies of one photo are near-duplicates, so a
split that puts them on both sides measures recall of seen photos, not generalisation.
``split(..., groups=...)`` keeps every group inside one split.
"""

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
    groups: int = 0  # how many groups were kept whole; 0 for a split of single images

    def describe(self) -> dict:
        out = {
            "fractions": list(self.fractions),
            "seed": self.seed,
            "sizes": [len(self.train), len(self.valid), len(self.test)],
        }
        if self.groups:
            out["groups"] = self.groups
        return out


def split(
    y: np.ndarray,
    fractions: Sequence[float] = (0.9, 0.09, 0.01),
    seed: int = 0,
    groups: np.ndarray | None = None,
) -> Split:
    """Stratified train/valid/test indices from a split seed.

    Each non-empty split gets at least one image per class, so tiny data sets still yield a
    macro-F1 over every class rather than a stratification error. With ``groups`` (one id per
    image, e.g. ``Dataset.groups``), every group lands whole in one split; see ``_group_split``.
    """
    from sklearn.model_selection import train_test_split

    f_train, f_valid, f_test = (float(f) for f in fractions)
    if min(f_train, f_valid) <= 0 or f_test < 0 or abs(f_train + f_valid + f_test - 1) > 1e-6:
        raise FishoptError(f"split {list(fractions)}: need train, valid > 0, test >= 0, sum 1")
    if groups is not None:
        return _group_split(np.asarray(y), np.asarray(groups), (f_train, f_valid, f_test), seed)
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


def _group_split(
    y: np.ndarray, groups: np.ndarray, fractions: tuple[float, float, float], seed: int
) -> Split:
    """Whole groups to each split, stratified by class as far as whole groups allow.

    A group counts as the class most of its images have. Per class, the groups are shuffled and
    the test and valid splits each take the number of groups (at least one) whose image count
    comes closest to their fraction of that class; train keeps the rest (at least one). With
    few, large groups the sizes overshoot the fractions: a split cannot hold a part of a group.
    """
    if len(groups) != len(y):
        raise ValueError(f"groups has {len(groups)} entries for {len(y)} labels")
    _f_train, f_valid, f_test = fractions
    ids, inverse = np.unique(groups, return_inverse=True)
    size = np.bincount(inverse)
    # Most common class per group: count (group, class) pairs.
    n_classes = int(y.max()) + 1
    pairs = np.bincount(inverse * n_classes + y, minlength=len(ids) * n_classes)
    label = pairs.reshape(len(ids), n_classes).argmax(1)
    need = 3 if f_test > 0 else 2
    rng = np.random.default_rng(seed)
    side = np.zeros(len(ids), dtype=np.int64)  # 0 train, 1 valid, 2 test
    for c in range(n_classes):
        members = rng.permutation(np.flatnonzero(label == c))
        if len(members) < need:
            raise FishoptError(
                f"class {c} has {len(members)} original(s); keeping originals whole needs at "
                f"least {need} per class"
            )
        total = size[members].sum()
        start = 0
        for which, fraction in ((2, f_test), (1, f_valid)):
            if fraction <= 0:
                continue
            cum = np.cumsum(size[members[start:]])
            # Leave at least one group for each split still to fill (valid, then train).
            room = len(members) - start - (2 if which == 2 else 1)
            k = int(np.argmin(np.abs(cum[:room] - fraction * total))) + 1
            side[members[start : start + k]] = which
            start += k
    where = side[inverse]
    train, valid, test = (np.flatnonzero(where == k) for k in range(3))
    return Split(train, valid, test, fractions, seed, groups=len(ids))
