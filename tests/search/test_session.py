"""The one setup: resuming old studies, how the split is drawn, the storage checked first."""

from __future__ import annotations

import tomllib
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import FrozenTrial, TrialState

from fishopt import config, data
from fishopt.errors import FishoptError
from fishopt.search import loop, spec
from fishopt.search.session import Options, build_context, open_session


def test_specs_keep_the_fingerprints_studies_were_stored_with() -> None:
    """Studies in existing databases were created with these fingerprints (fishopt before
    the tuned protocol and split options); a changed value would refuse to resume them."""
    stored = {
        "optimizers": "10840b06e9f740b7",
        "widths": "c70cf6bafcde3b49",
        "depth": "b57d5c28c3c2df6c",
    }
    assert {name: spec.load(name).fingerprint() for name in stored} == stored
    varied = spec.parse(
        {**tomllib.loads(Path(spec.find("depth")).read_text()), "vary_split": True}, "depth"
    )
    assert varied.fingerprint() != stored["depth"]  # a new option that is set does count


# studies/full.toml before figure 4 on replay chose successive halving and 60 trials.
FULL_BEFORE_REPLAY = """
kind = "full"
n_trials = 40
epochs = 20
seed = 0
repeats = 1
[sampler]
name = "tpe"
n_startup_trials = 10
[pruner]
name = "median"
n_startup_trials = 5
n_warmup_steps = 3
[space]
optimizer = ["SGD", "Adam", "AdamW", "Adamax", "NAdam", "RAdam", "Adagrad", "RMSprop"]
lr = { low = 1e-4, high = 3e-2, log = true }
weight_decay = { low = 1e-6, high = 1e-2, log = true }
n_layers = { low = 1, high = 4 }
units = { low = 32, high = 1024, log = true }
width_pattern = ["constant", "decreasing", "free"]
width_ratio = { low = 0.25, high = 1.0 }
dropout = { low = 0.0, high = 0.5 }
batch_norm = [true, false]
batch_size = [32, 50, 64, 128]
"""


def test_a_full_study_made_before_the_new_defaults_resumes_with_its_own_spec(
    tmp_path: Path,
) -> None:
    """fishopt's own full.toml changed its pruner; a full study already in storage was made
    with the old one (fingerprint 950b6c4aa7c198cb) and must resume with it, saying so."""
    old = tmp_path / "full.toml"
    old.write_text(FULL_BEFORE_REPLAY)
    assert spec.load(str(old)).fingerprint() == "950b6c4aa7c198cb"
    assert spec.load("full").fingerprint() != "950b6c4aa7c198cb"
    common = {
        "data": "digits",
        "storage": f"sqlite:///{tmp_path / 's.db'}",
        "cache_dir": tmp_path / "cache",
        "artifacts_dir": tmp_path / "artifacts",
        "threads": 1,
        "epochs": 1,
    }
    first = open_session(Options(study=str(old), name="full", **common), distributed=False)
    assert first.ctx.spec.pruner["name"] == "median"
    again = open_session(Options(study="full", **common), distributed=False)
    assert again.ctx.spec.pruner["name"] == "median"
    assert any("keeps the spec it was created with" in n for n in again.warnings), again.warnings
    fresh = open_session(Options(study="full", name="full-2", **common), distributed=False)
    assert fresh.ctx.spec.pruner["name"] == spec.load("full").pruner["name"]
    assert not any("keeps the spec" in n for n in fresh.warnings)
    # Joined with the same --epochs: the stored spec differs from the file only by the flag.
    joined = open_session(Options(study="full", name="full-2", **common), distributed=False)
    assert not any("keeps the spec" in n for n in joined.warnings), joined.warnings


def _digits_spec(**extra: object) -> spec.StudySpec:
    raw = {"kind": "custom", "epochs": 1, "split": [0.7, 0.2, 0.1], **extra}
    return spec.parse(raw, name="s")


def test_vary_split_gives_each_repeat_its_own_split(tmp_path: Path) -> None:
    settings = config.resolve(cache_dir=tmp_path, env={})
    ctx, _hit, _s = build_context(
        _digits_spec(vary_split=True), data.parse_source("digits"), settings
    )
    base, seed0 = ctx.tensors_for(0)
    other, seed1 = ctx.tensors_for(1)
    again, _ = ctx.tensors_for(1)
    assert (seed0, seed1) == (0, 1)
    assert base is ctx.tensors and again is other
    assert not torch.equal(base.y_valid, other.y_valid) or not torch.equal(
        base.X_valid, other.X_valid
    )
    assert len(other.y_train) == len(base.y_train)  # same fractions
    fixed, _s2, _ = build_context(_digits_spec(), data.parse_source("digits"), settings)
    assert fixed.tensors_for(3)[0] is fixed.tensors  # without vary_split: one split


def test_split_by_original_needs_data_that_names_originals(tmp_path: Path) -> None:
    settings = config.resolve(cache_dir=tmp_path, env={})
    with pytest.raises(FishoptError, match="do not say which original"):
        build_context(_digits_spec(split_by="original"), data.parse_source("digits"), settings)
    with pytest.raises(FishoptError, match="split_by"):
        _digits_spec(split_by="by-class")


class _PruneAllButTrialZero(optuna.pruners.BasePruner):
    def prune(self, study: optuna.Study, trial: FrozenTrial) -> bool:
        return trial.number != 0


def test_re_evaluations_of_a_completed_configuration_are_never_pruned(tmp_path: Path) -> None:
    """Repeats measure a configuration that already survived the pruner; pruned on one noisy
    epoch they would leave it without the seeds a study declares its best by."""
    path = tmp_path / "s.toml"
    path.write_text(
        'kind = "custom"\nepochs = 2\nseed = 0\nn_trials = 4\nrepeats = 3\n'
        "split = [0.7, 0.2, 0.1]\n"
        '[sampler]\nname = "random"\n[pruner]\nname = "median"\n[fixed]\nhidden = [8]\n'
        "[space]\nlr = { low = 1e-3, high = 1e-1, log = true }\n"
    )
    opts = Options(
        study=str(path),
        data="digits",
        storage=f"sqlite:///{tmp_path / 's.db'}",
        cache_dir=tmp_path / "cache",
        artifacts_dir=tmp_path / "artifacts",
        threads=1,
    )
    session = open_session(opts, distributed=False)
    session.study.pruner = _PruneAllButTrialZero()
    loop.run(session, flags=loop.Flags(), log=lambda _m: None)
    trials = session.study.get_trials(deepcopy=False)
    repeats = [t for t in trials if "repeat_of" in t.user_attrs]
    fresh = [t for t in trials if t.number != 0 and "repeat_of" not in t.user_attrs]
    assert [t.user_attrs["repeat"] for t in repeats] == [1, 2]
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["epochs_run"] == 2 for t in repeats)
    assert fresh and all(t.state == TrialState.PRUNED for t in fresh)  # the pruner was at work
