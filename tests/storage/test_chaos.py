"""A short chaos run (``bench.chaos``, same code): faults during one study, nothing lost.

Workers are forked warm (tests/forkserver.py; ``python -m bench.chaos`` starts fresh
interpreters). On a throwaway PostgreSQL: 4 workers, SIGKILLs of training workers (restarted by the
supervisor), two PostgreSQL restarts and one worker SIGSTOPped past the stale timeout. On
SQLite: SIGKILLs only, then ``PRAGMA integrity_check``. ``bench.chaos.audit`` checks the budget,
states, trial numbers, retries, curves and the best trial's weights; its own checks are tested
here on hand-made trials, so a broken audit cannot pass a broken study.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from pathlib import Path

import optuna
import pytest
import torch
from forkserver import warm
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from bench import chaos
from fishopt.bundle import artifacts
from fishopt.training.model import MLPSpec


def _report(result: chaos.Result) -> str:
    return "\n".join([*result.lines(), *result.audit.problems, result.output[-3000:]])


@pytest.mark.slow(seconds=30)
def test_chaos_on_postgresql(server_binaries: None, tmp_path: Path) -> None:
    plan = chaos.Plan(
        "postgresql", workers=4, budget=12, epochs=12, kills=2, restarts=2, stops=1,
        interval=2, grace=4, timeout=240, spread=0.3, jitter=0.5,
    )  # fmt: skip
    result = chaos.run(plan, tmp_path, warm)
    print("\n" + "\n".join(result.lines()))
    assert result.ok, _report(result)
    f = result.faults
    assert (f.kills, f.restarts, f.stops) == (2, 2, 1), _report(result)
    assert result.audit.failed >= f.kills + f.stops  # each hit a training worker's trial
    assert result.audit.best_artifact == "ok"


@pytest.mark.slow(seconds=18)
def test_chaos_on_sqlite(tmp_path: Path) -> None:
    plan = chaos.Plan(
        "sqlite", workers=3, budget=10, epochs=12, kills=2, interval=1, grace=3, timeout=240,
        spread=0.3, jitter=0.5,
    )  # fmt: skip
    result = chaos.run(plan, tmp_path, warm)
    print("\n" + "\n".join(result.lines()))
    assert result.ok, _report(result)
    assert result.faults.kills == 2
    assert result.audit.integrity == "ok"


# ------------------------------------------------------------------- the audit catches faults


def _trial(number: int, state: TrialState, epochs: int = 3, **attrs: object):
    curve = [0.5, 0.7, 0.6][:epochs]
    history = [{"epoch": e + 1, "valid_f1": v} for e, v in enumerate(curve)]
    done = state == TrialState.COMPLETE
    t = create_trial(
        state=state,
        value=max(curve) if done else None,
        params={"lr": 0.01},
        distributions={"lr": FloatDistribution(1e-3, 1e-1, log=True)},
        user_attrs=(
            {"history": history, "epochs_run": epochs, "best_epoch": 2, "seed": 7} if done else {}
        )
        | attrs,
        intermediate_values={r["epoch"]: r["valid_f1"] for r in history} if done else None,
    )
    t.number = number
    t.datetime_start = dt.datetime.now()
    return t


def test_audit_passes_a_whole_study_and_names_each_broken_invariant() -> None:
    retry = _trial(2, TrialState.COMPLETE)
    retry.system_attrs = {"failed_trial": 1, "retry_history": [1]}
    good = [_trial(0, TrialState.COMPLETE), _trial(1, TrialState.FAIL, seed=7), retry]
    a = chaos.audit(good, budget=2, epochs=3)
    assert a.problems == [] and a.retried_once == 1 and a.curves_intact == 2

    def problems(trials: list, budget: int = 2) -> str:
        return " | ".join(chaos.audit(trials, budget=budget, epochs=3).problems)

    assert "0 complete retries among 0" in problems([*good[:2], _trial(2, TrialState.COMPLETE)])
    # A retry killed in its turn and retried again: one chain, ending in one COMPLETE run.
    killed = _trial(2, TrialState.FAIL, seed=7)
    killed.system_attrs = {"failed_trial": 1, "retry_history": [1]}
    again = _trial(3, TrialState.COMPLETE)
    again.system_attrs = {"failed_trial": 1, "retry_history": [1, 2]}
    assert problems([*good[:2], killed, again]) == ""
    twice = _trial(3, TrialState.COMPLETE)
    twice.system_attrs = {"failed_trial": 1, "retry_history": [1]}
    assert "2 complete retries among 2" in problems([*good, twice], budget=3)
    assert "RUNNING" in problems([*good, _trial(3, TrialState.RUNNING)])
    assert "budget 3" in problems(good, budget=3)
    assert "not unique" in problems([*good, _trial(2, TrialState.FAIL)])
    other = _trial(2, TrialState.COMPLETE, seed=8)
    other.system_attrs = retry.system_attrs
    assert "with another seed" in problems([*good[:2], other])
    moved = _trial(2, TrialState.COMPLETE)
    moved.params = {"lr": 0.02}
    moved.system_attrs = retry.system_attrs
    assert "other parameters" in problems([*good[:2], moved])
    short = _trial(0, TrialState.COMPLETE, epochs=2)
    assert "not 1..3" in problems([short, *good[1:]])
    wrong = _trial(0, TrialState.COMPLETE)
    wrong.intermediate_values = {1: 0.5, 2: 0.1, 3: 0.6}
    assert "reported epochs" in problems([wrong, *good[1:]])


def test_audit_checks_the_best_trials_weights(tmp_path: Path) -> None:
    """Stored weights that are missing or changed are named, not passed."""
    st = optuna.create_study(direction="maximize")
    trial = st.ask()
    spec = MLPSpec(in_features=4, hidden=(3,), n_classes=2)
    blob = artifacts.weights_bytes(torch.nn.Linear(4, 2).state_dict(), spec)
    store = artifacts.open_store(tmp_path)
    store.write("abc", io.BytesIO(blob))
    meta = {"id": "abc", "sha256": hashlib.sha256(blob).hexdigest(), "model": spec.to_dict()}
    trial.set_user_attr(artifacts.ATTR, meta)
    st.tell(trial, 0.9)
    ts = st.get_trials()
    assert chaos.audit(ts, 1, 1, st, tmp_path).best_artifact == "ok"
    (tmp_path / "abc").write_bytes(blob + b"x")
    assert chaos.audit(ts, 1, 1, st, tmp_path).best_artifact == "sha256 mismatch"
    (tmp_path / "abc").unlink()
    assert chaos.audit(ts, 1, 1, st, tmp_path).best_artifact == "missing"


def test_a_connection_cut_under_the_pool_is_one_line(capsys: pytest.CaptureFixture) -> None:
    """SQLAlchemy's pool logs a traceback when a connection it takes back was cut (a database
    restart, a pooler's); the connection is replaced, so fishopt prints one line of it."""
    import logging

    from fishopt import redact

    redact.install()
    try:
        raise OSError("terminating connection due to administrator command\nDETAIL: more")
    except OSError:
        logging.getLogger("sqlalchemy.pool.impl.QueuePool").error(
            "Exception during reset or similar", exc_info=True
        )
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "Exception during reset or similar: OSError: terminating connection due to "
        "administrator command"
    ]
