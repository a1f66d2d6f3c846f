"""Keeping the winner as it is found: the best trial's weights as an Optuna artifact.

While a study runs, a trial whose validation F1 beats every completed trial so far writes its
best-epoch weights (safetensors, with the network's spec in the header) to a file-system
artifact store and records the artifact id and sha256 as a trial user attribute. Exporting the
best model then needs no retraining. Artifacts of trials that are no longer the best are
removed, so the store holds about one model per study (more only when workers race).

The store is a plain folder (``Settings.artifacts_dir``); several workers may share it because
each artifact has its own uuid name and is written to a temporary file and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import optuna
import torch
from optuna.artifacts import FileSystemArtifactStore, upload_artifact
from optuna.artifacts.exceptions import ArtifactNotFound
from optuna.trial import FrozenTrial, TrialState
from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors

from fishopt.errors import FishoptError
from fishopt.files import atomic_file
from fishopt.search.studies import best_completed
from fishopt.storage import fence
from fishopt.storage.reads import best_value
from fishopt.training.model import MLPSpec
from fishopt.training.train import TrainResult

# The hook's shape, as ``search.objective.TrainedHook`` expects it.
TrainedHook = Callable[[optuna.Trial, MLPSpec, TrainResult], None]
ATTR = "model_artifact"  # trial user attribute: {"id", "sha256", "bytes", "model"}
FILENAME = "model.safetensors"


class AtomicFileSystemArtifactStore(FileSystemArtifactStore):
    """Optuna's file-system store, but a reader never sees a half-written artifact."""

    def __init__(self, base_path: str | Path) -> None:
        Path(base_path).mkdir(parents=True, exist_ok=True)
        super().__init__(base_path)

    def write(self, artifact_id: str, content_body: BinaryIO) -> None:
        with atomic_file(self._get_filepath(artifact_id)) as f:
            shutil.copyfileobj(content_body, f, 1 << 20)


def open_store(folder: Path) -> AtomicFileSystemArtifactStore:
    return AtomicFileSystemArtifactStore(folder)


def weights_bytes(state: dict[str, torch.Tensor], model: MLPSpec) -> bytes:
    """safetensors bytes; the header carries the spec so the file alone rebuilds the network."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in state.items()}
    return save_safetensors(tensors, metadata={"fishopt_model": json.dumps(model.to_dict())})


class _Deferred:
    """Stands in for the storage in ``upload_artifact``, which registers an artifact in the
    trial before writing its file: here the entry is kept back until the file is whole, so a
    full disk leaves no entry pointing at nothing."""

    def __init__(self) -> None:
        self.attrs: list[tuple[str, Any]] = []

    def set_trial_system_attr(self, _trial_id: int, key: str, value: Any) -> None:
        self.attrs.append((key, value))


def keep_best(folder: Path, log: Callable[[str], None] | None = None) -> TrainedHook:
    """The ``on_trained`` hook that stores a trial's weights when it beats the study's best.

    A store that cannot be written (a full disk, a read-only mount) costs the trial its
    weights, not its result: ``log`` (or a warning) says so in one line, the trial stays
    COMPLETE with the reason in its ``model_artifact_error`` attribute, and export-best names
    it. The weights file is written whole under a temporary name or not at all.
    """

    def hook(trial: optuna.Trial, model: MLPSpec, result: TrainResult) -> None:
        best = best_value(trial.study)
        if best is not None and result.best_valid_f1 <= best:
            return
        blob = weights_bytes(result.state, model)
        deferred = _Deferred()
        try:
            store = open_store(folder)
            with tempfile.TemporaryDirectory(prefix="fishopt-artifact-") as tmp:
                path = Path(tmp) / FILENAME
                path.write_bytes(blob)
                artifact_id = upload_artifact(
                    artifact_store=store,
                    file_path=str(path),
                    study_or_trial=trial,
                    storage=deferred,  # type: ignore[arg-type]
                )
        except OSError as exc:
            # A full or read-only disk must not cost the trial its result; export-best will
            # say the weights are missing and offer --retrain.
            reason = f"{exc.strerror or exc} ({folder})"
            trial.set_user_attr(f"{ATTR}_error", reason)
            msg = f"trial {trial.number}: weights not kept: {reason}; the trial goes on"
            if log is not None:
                log(f"warning: {msg}")
            else:
                warnings.warn(msg, stacklevel=2)
            return
        for key, value in deferred.attrs:  # the file is in place: now the dashboard may list it
            trial.storage.set_trial_system_attr(fence.trial_id(trial), key, value)
        # Set only after the file is in place: a reader that sees the attribute sees the file.
        trial.set_user_attr(
            ATTR,
            {
                "id": artifact_id,
                "sha256": hashlib.sha256(blob).hexdigest(),
                "bytes": len(blob),
                "model": model.to_dict(),
                "valid_f1": result.best_valid_f1,
            },
        )
        prune_beaten(trial.study, store, result.best_valid_f1)

    return hook


def not_kept(trial: FrozenTrial) -> str | None:
    """Why a completed trial that beat the study's best at the time has no stored weights
    (its store could not be written), or None."""
    if ATTR in trial.user_attrs:
        return None
    return trial.user_attrs.get(f"{ATTR}_error")


def best_not_kept(trials: list[FrozenTrial]) -> tuple[FrozenTrial, str] | None:
    """The best trial and why its weights were not kept, when no trial of the best value
    has stored weights and the store failed; otherwise None."""
    best = best_completed(trials)
    if best is None:
        return None
    tied = [t for t in trials if t.state == TrialState.COMPLETE and t.value == best.value]
    if any(ATTR in t.user_attrs for t in tied):
        return None
    why = next((w for t in tied if (w := not_kept(t))), None)
    return (best, why) if why else None


def prune_beaten(study: optuna.Study, store: FileSystemArtifactStore, value: float) -> int:
    """Remove stored weights of completed trials that score below ``value``; returns how many."""
    removed = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        meta = t.user_attrs.get(ATTR)
        if meta is None or t.value is None or t.value >= value:
            continue
        with contextlib.suppress(ArtifactNotFound, FileNotFoundError):
            store.remove(meta["id"])
            removed += 1
    return removed


def stored_trials(study: optuna.Study) -> list[FrozenTrial]:
    """Completed trials that recorded weights, best first (ties: earliest trial first)."""
    done = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and ATTR in t.user_attrs
    ]
    return sorted(done, key=lambda t: (-float(t.value), t.number))  # type: ignore[arg-type]


def fetch(trial: FrozenTrial, folder: Path) -> tuple[dict[str, torch.Tensor], MLPSpec, bytes]:
    """A trial's stored weights, checked against the sha256 recorded when they were stored."""
    meta = trial.user_attrs.get(ATTR)
    if meta is None:
        raise FishoptError(f"trial {trial.number} stored no weights")
    store = open_store(folder)
    try:
        with store.open_reader(meta["id"]) as f:
            blob = f.read()
    except ArtifactNotFound:
        raise FishoptError(
            f"trial {trial.number}: weights artifact {meta['id']} is not in {folder} "
            "(pass --artifacts-dir, or --retrain to train its params again)"
        ) from None
    digest = hashlib.sha256(blob).hexdigest()
    if digest != meta["sha256"]:
        raise FishoptError(
            f"trial {trial.number}: artifact {folder / meta['id']} has sha256 {digest[:12]}..., "
            f"recorded {meta['sha256'][:12]}...; the file was changed"
        )
    return load_safetensors(blob), MLPSpec.from_dict(meta["model"]), blob
