"""What a trial trains on: the spec, the data, the split and its tensors, built once per process.

Kept apart from the objective and the session, which both need it: the session builds a
``Context`` and the objective reads one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from fishopt import data
from fishopt.data import Dataset, Split
from fishopt.data.split_cache import kept_split
from fishopt.errors import FishoptError
from fishopt.search.spec import StudySpec


@dataclass(frozen=True)
class Tensors:
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_valid: torch.Tensor
    y_valid: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(frozen=True)
class Context:
    """Everything a trial needs, built once per process."""

    spec: StudySpec
    dataset: Dataset
    split: Split
    tensors: Tensors
    device: str = "cpu"
    cache_dir: Path | None = None  # where splits are kept (data.split_cache)
    # With ``vary_split``, the tensors of other split seeds, made when a repeat first needs them.
    _other_splits: dict[int, Tensors] = field(default_factory=dict, compare=False, repr=False)

    def tensors_for(self, repeat: int) -> tuple[Tensors, int]:
        """The tensors a trial trains on, and their split seed: repeat r of a spec with
        ``vary_split`` draws split seed base + r (Bouthillier et al.: the split is a source of
        variance too); every other trial uses the study's split."""
        base = self.spec.base_split_seed
        if not self.spec.vary_split or repeat == 0:
            return self.tensors, base
        seed = base + repeat
        if seed not in self._other_splits:
            split = split_for(self.spec, self.dataset, seed, self.cache_dir)
            self._other_splits[seed] = make_tensors(self.dataset, split, self.device)
        return self._other_splits[seed], seed

    @property
    def n_classes(self) -> int:
        return len(self.dataset.classes)

    @property
    def in_features(self) -> int:
        return int(self.dataset.X.shape[1])


def make_tensors(ds: Dataset, split: Split, device: str = "cpu") -> Tensors:
    """Copy each split once into contiguous tensors on the device; trials only slice them."""

    def take(idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        X = torch.from_numpy(np.ascontiguousarray(ds.X[idx], dtype=np.float32))
        y = torch.from_numpy(np.ascontiguousarray(ds.y[idx], dtype=np.int64))
        return X.to(device), y.to(device)

    return Tensors(*take(split.train), *take(split.valid), *take(split.test))


def split_for(
    spec: StudySpec, ds: data.Dataset, seed: int, cache_dir: Path | None = None
) -> data.Split:
    """The spec's split of ``ds`` with ``seed``; ``split_by = "original"`` keeps every copy of
    one original image in one part, where the file names say which original that is. With
    ``cache_dir``, made once there and read back by every later process."""
    if spec.split_by == "original" and ds.groups is None:
        raise FishoptError(
            f'split_by = "original": the images of {ds.source} do not say which original '
            'they were copied from (file names ending -orig<N>); use split_by = "random"'
        )
    groups = ds.groups if spec.split_by == "original" else None
    return kept_split(cache_dir, ds.fingerprint, ds.y, spec.split, seed, groups)
