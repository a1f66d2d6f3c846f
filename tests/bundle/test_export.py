"""export-best: the winner kept as an artifact while the study ran, bundled without retraining."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import optuna
import pytest
import torch
from conftest import run_main
from optuna.trial import TrialState, create_trial

from fishopt import config
from fishopt.bundle import artifacts, export
from fishopt.errors import FishoptError
from fishopt.storage.connect import open_storage


def _study(exported: dict) -> optuna.Study:
    return optuna.load_study(
        study_name="optimizers", storage=open_storage(exported["storage"], heartbeat=False)
    )


def _settings(exported: dict) -> config.Settings:
    return config.resolve(
        storage=exported["storage"],
        cache_dir=exported["cache"],
        artifacts_dir=exported["artifacts"],
        env={},
    )


def test_study_keeps_the_best_trial_weights_as_an_artifact(exported: dict) -> None:
    st = _study(exported)
    done = [t for t in st.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4
    stored = artifacts.stored_trials(st)
    assert stored, "no trial stored its weights"
    best_value = max(t.value for t in done)
    assert stored[0].value == best_value
    files = {p.name for p in exported["artifacts"].iterdir() if not p.name.startswith(".")}
    # The best trial's file is there and matches the sha256 recorded when it was stored ...
    meta = stored[0].user_attrs[artifacts.ATTR]
    assert meta["id"] in files
    blob = (exported["artifacts"] / meta["id"]).read_bytes()
    assert hashlib.sha256(blob).hexdigest() == meta["sha256"]
    # ... the artifact is registered with Optuna for that trial ...
    metas = optuna.artifacts.get_all_artifact_meta(stored[0], storage=st._storage)
    assert [m.artifact_id for m in metas] == [meta["id"]]
    # ... and weights of trials that were beaten later are pruned.
    for t in stored:
        if t.value < best_value:
            assert t.user_attrs[artifacts.ATTR]["id"] not in files
    assert not list(exported["artifacts"].glob(".tmp-*"))


def test_export_best_uses_the_stored_weights_and_records_test_metrics(exported: dict) -> None:
    bundle: Path = exported["bundle"]
    assert sorted(p.name for p in bundle.iterdir()) == [
        "MODEL_CARD.md",
        "model.json",
        "model.onnx",
        "model.safetensors",
    ]
    meta = json.loads((bundle / "model.json").read_text())
    st = _study(exported)
    best = artifacts.stored_trials(st)[0]
    # Not retrained: the bundle's weights are byte-for-byte the artifact stored by the trial.
    assert meta["weights_origin"] == "artifact"
    artifact = exported["artifacts"] / best.user_attrs[artifacts.ATTR]["id"]
    assert (bundle / "model.safetensors").read_bytes() == artifact.read_bytes()
    weights_sha = hashlib.sha256((bundle / "model.safetensors").read_bytes()).hexdigest()
    assert meta["weights"]["sha256"] == weights_sha
    assert meta["source"]["study"] == "optimizers"
    assert meta["source"]["trial"] == best.number
    assert meta["source"]["params"] == best.params
    assert meta["metrics"]["valid_f1"] == best.value
    assert meta["model"]["hidden"] == [256, 128] and meta["model"]["in_features"] == 2655
    assert meta["classes"] == sorted(p.name for p in exported["data"].iterdir() if p.is_dir())
    assert meta["preprocessing"]["width"] == 59 and meta["preprocessing"]["height"] == 45
    assert set(meta["versions"]) >= {"fishopt", "torch", "optuna"}
    test = meta["metrics"]["test"]
    cm = test["confusion"]
    assert len(cm) == 9 and all(len(r) == 9 for r in cm)
    assert sum(map(sum, cm)) == test["n"] == meta["source"]["split"]["sizes"][2]
    assert test["accuracy"] == pytest.approx(sum(cm[i][i] for i in range(9)) / test["n"])
    # The trial measured its own test F1 while running; the export must agree with it.
    assert test["macro_f1"] == pytest.approx(best.user_attrs["test_f1"])
    assert list(test["per_class_f1"]) == meta["classes"]
    onnx = meta["onnx"]
    assert onnx["same_class"] == onnx["checked_on"] == test["n"]
    assert onnx["max_abs_logit_diff"] <= export.ONNX_TOLERANCE
    card = (bundle / "MODEL_CARD.md").read_text()
    assert f"trial {best.number}" in card and weights_sha in card
    assert "wrote" in exported["stdout"]
    # Test figures come with their intervals, and a 1% test split is flagged as small.
    out = " ".join(exported["stdout"].split())
    assert re.search(r"accuracy 0\.\d{3} \(95% CI 0\.\d{3}-[01]\.\d{3}\) \(Wilson\)", out), out
    test = meta["metrics"]["test"]
    low, high = test["macro_f1_ci95"]
    assert 0 <= low <= high <= 1 and test["warning"] and "fewer than 100" in test["warning"]


def test_retrain_trains_on_train_plus_valid_and_reports_both(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--retrain: the best params trained again on train+valid (no validation, no test rows)
    for the best trial's epoch count and seed, the last epoch's weights bundled; the test
    figures of the retrained model and of the original trial both reported."""
    from safetensors.torch import load_file

    calls = []
    real_train = export.train

    def spy(model_spec, optim_spec, X, y, X_valid, y_valid, cfg, *rest):  # type: ignore[no-untyped-def]
        result = real_train(model_spec, optim_spec, X, y, X_valid, y_valid, cfg, *rest)
        calls.append({"rows": len(X), "valid": X_valid, "config": cfg, "result": result})
        return result

    monkeypatch.setattr(export, "train", spy)
    done = export.export_best(
        "optimizers", _settings(exported), tmp_path / "retrained", retrain_model=True
    )
    meta = done.meta
    best = artifacts.stored_trials(_study(exported))[0]
    (call,) = calls
    n_train, n_valid, n_test = meta["source"]["split"]["sizes"]
    assert call["rows"] == n_train + n_valid and call["valid"] is None
    assert call["config"].keep == "last"
    assert call["config"].epochs == best.user_attrs["best_epoch"]
    assert call["config"].seed == best.user_attrs["seed"]
    assert len(call["result"].history) == best.user_attrs["best_epoch"]
    # The bundle holds exactly the weights that training ended with.
    weights = load_file(str(done.path / "model.safetensors"))
    assert weights.keys() == call["result"].state.keys()
    assert all(torch.equal(weights[k], v) for k, v in call["result"].state.items())
    assert meta["weights_origin"] == "retrained"
    # Both test figures: the retrained model's, on the same test split, and the trial's own.
    assert meta["metrics"]["test"]["n"] == n_test
    assert meta["metrics"]["trial_test"] == {
        "accuracy": best.user_attrs["test_acc"],
        "macro_f1": best.user_attrs["test_f1"],
    }
    card = (done.path / "MODEL_CARD.md").read_text()
    assert "Retrained on train+valid" in card
    assert f"macro-F1 {best.user_attrs['test_f1']:.4f}" in card


def test_a_failed_export_leaves_the_existing_bundle_whole(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bundle"
    export.export_best("optimizers", _settings(exported), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(*_a: object, **_k: object) -> dict:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(export, "write_onnx", broken)
    with pytest.raises(OSError, match="disk full"):
        export.export_best("optimizers", _settings(exported), out, onnx=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]  # no temp folders left


def test_export_refuses_to_replace_a_folder_that_is_not_a_bundle(
    exported: dict, tmp_path: Path
) -> None:
    out = tmp_path / "precious"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FishoptError, match="not a fishopt bundle"):
        export.export_best("optimizers", _settings(exported), out)
    assert (out / "notes.txt").read_text() == "keep me"


def test_export_errors_unknown_study_and_no_complete_trials(exported: dict) -> None:
    st = optuna.create_study(
        study_name="nothing-done", storage=open_storage(exported["storage"], heartbeat=False)
    )
    st.add_trial(create_trial(state=TrialState.FAIL))
    with pytest.raises(FishoptError, match="no complete trials"):
        export.export_best("nothing-done", _settings(exported))
    st2 = optuna.create_study(
        study_name="no-weights", storage=open_storage(exported["storage"], heartbeat=False)
    )
    st2.add_trial(create_trial(value=0.5, params={}, distributions={}))
    with pytest.raises(FishoptError, match=r"stored no weights.*--retrain"):
        export.export_best("no-weights", _settings(exported))


def test_cli_export_error_is_one_line(
    exported: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    code, _out, err = run_main(
        monkeypatch, capsys, "export-best", "nope", "--storage", exported["storage"]
    )
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no study 'nope'" in lines[0] and "optimizers" in lines[0]
    assert "Traceback" not in err


def test_export_refuses_a_tampered_artifact(exported: dict, tmp_path: Path) -> None:
    st = _study(exported)
    meta = artifacts.stored_trials(st)[0].user_attrs[artifacts.ATTR]
    copy = tmp_path / "artifacts"
    copy.mkdir()
    blob = bytearray((exported["artifacts"] / meta["id"]).read_bytes())
    blob[-1] ^= 0xFF
    (copy / meta["id"]).write_bytes(bytes(blob))
    settings = config.resolve(
        storage=exported["storage"], cache_dir=exported["cache"], artifacts_dir=copy, env={}
    )
    with pytest.raises(FishoptError, match="file was changed"):
        export.export_best("optimizers", settings, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_workers_sharing_a_store_keep_only_the_best(tmp_path: Path) -> None:
    """Two study handles on one storage and one artifact folder, as two workers would be."""
    from types import SimpleNamespace

    import torch

    from fishopt.training.model import MLPSpec, build_mlp

    url = f"sqlite:///{tmp_path / 'w.db'}"
    folder = tmp_path / "shared-artifacts"
    optuna.create_study(study_name="w", storage=open_storage(url, heartbeat=False))
    workers = [
        optuna.load_study(study_name="w", storage=open_storage(url, heartbeat=False))
        for _ in range(2)
    ]
    hook = artifacts.keep_best(folder)
    spec = MLPSpec(6, (4,), 3)
    states = []
    for i, value in enumerate([0.5, 0.7, 0.6, 0.9]):
        torch.manual_seed(i)
        state = build_mlp(spec).state_dict()
        states.append(state)
        worker = workers[i % 2]
        trial = worker.ask()
        hook(trial, spec, SimpleNamespace(state=state, best_valid_f1=value))
        worker.tell(trial, value)
    st = workers[0]
    stored = {t.number for t in st.trials if artifacts.ATTR in t.user_attrs}
    assert stored == {0, 1, 3}  # trial 2 (0.6) never beat 0.7, so it stored nothing
    files = [p for p in folder.iterdir()]
    assert len(files) == 1  # trials 0 and 1 were pruned when a better one arrived
    best = artifacts.stored_trials(st)[0]
    assert best.number == 3
    weights, model_spec, _blob = artifacts.fetch(best, folder)
    assert model_spec == spec
    assert all(torch.equal(weights[k], states[3][k]) for k in states[3])


def test_a_store_that_cannot_be_written_does_not_fail_the_trial(tmp_path: Path) -> None:
    from types import SimpleNamespace

    from fishopt.training.model import MLPSpec, build_mlp

    (tmp_path / "a-file").write_text("not a folder")
    hook = artifacts.keep_best(tmp_path / "a-file" / "artifacts")
    url = f"sqlite:///{tmp_path / 'x.db'}"
    st = optuna.create_study(storage=open_storage(url, heartbeat=False))
    trial = st.ask()
    state = build_mlp(MLPSpec(6, (4,), 3)).state_dict()
    with pytest.warns(UserWarning, match="weights not kept"):
        hook(trial, MLPSpec(6, (4,), 3), SimpleNamespace(state=state, best_valid_f1=0.5))
    st.tell(trial, 0.5)
    [frozen] = st.trials
    assert artifacts.ATTR not in frozen.user_attrs
    assert "model_artifact_error" in frozen.user_attrs


def test_export_takes_moved_data_but_refuses_other_data(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """--data where the images moved is used; images that differ (one photo fewer) have
    another fingerprint and are refused in one line, with no bundle written."""
    import shutil

    moved = tmp_path / "moved" / "Fish_Dataset"
    shutil.copytree(exported["data"], moved)
    done = export.export_best(
        "optimizers", _settings(exported), tmp_path / "from-moved", data_flag=str(moved)
    )
    assert (
        done.meta["source"]["data_fingerprint"]
        == _study(exported).user_attrs["fishopt"]["data_fingerprint"]
    )
    next(moved.glob("Trout/Trout/*.png")).unlink()
    out = tmp_path / "from-other"
    code, _out, err = run_main(
        monkeypatch, capsys, "export-best", "optimizers", "--storage", exported["storage"],
        "--data", str(moved), "--out", str(out), "--cache-dir", str(exported["cache"]),
    )  # fmt: skip
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert "fingerprint" in line and "differs from study 'optimizers'" in line
    assert not out.exists()


class _OtherWhenExported(torch.nn.Module):
    """A model whose ONNX graph is not what torch runs: it answers zeros while exported."""

    def __init__(self, inner: torch.nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.inner(x)
        return logits * 0 if torch.onnx.is_in_onnx_export() else logits


def test_onnx_that_disagrees_with_torch_is_refused(
    exported: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "bundle"
    export.export_best("optimizers", _settings(exported), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real = export.load_model
    monkeypatch.setattr(export, "load_model", lambda *a, **k: _OtherWhenExported(real(*a, **k)))
    with pytest.raises(FishoptError, match=r"model.onnx disagrees with torch .* not exported"):
        export.export_best("optimizers", _settings(exported), out, onnx=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no model.onnx
    assert [p.name for p in tmp_path.iterdir()] == ["bundle"]
