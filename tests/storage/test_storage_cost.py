"""What one trial costs the database: SQL statements counted with a SQLAlchemy event.

With cheap trials the storage round-trips, not the training, decide how much of the machine a
study spends on training (bench figure 5). The per-epoch cost is the difference between the
same study run with more and fewer epochs; the rest is the per-trial cost.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
from sqlalchemy import event

from fishopt.search import loop
from fishopt.search.session import Options, open_session

SPEC = """kind = "custom"
epochs = {epochs}
seed = 0
n_trials = 6
split = [0.7, 0.2, 0.1]
[sampler]
name = "random"
[pruner]
name = "none"
[fixed]
hidden = [8]
[space]
lr = {{ low = 1e-3, high = 1e-1, log = true }}
"""


def _statements_per_trial(tmp_path: Path, epochs: int) -> float:
    spec = tmp_path / f"cost{epochs}.toml"
    spec.write_text(SPEC.format(epochs=epochs))
    opts = Options(
        study=str(spec),
        data="digits",
        storage=f"sqlite:///{tmp_path / f'cost{epochs}.db'}",
        cache_dir=tmp_path / "cache",
        artifacts_dir=tmp_path / "artifacts",
        threads=1,
    )
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        session = open_session(opts, distributed=False)
    count = [0]

    def on_statement(*_args: object) -> None:
        count[0] += 1

    event.listen(session.storage.engine, "before_cursor_execute", on_statement)
    outcome = loop.run(session, flags=loop.Flags(), log=lambda _m: None)
    assert outcome.ran == 6 and outcome.reason == "budget"
    return count[0] / outcome.ran


def test_a_trial_costs_one_statement_per_epoch_and_a_bounded_rest(tmp_path: Path) -> None:
    short, long = _statements_per_trial(tmp_path, 2), _statements_per_trial(tmp_path, 6)
    per_epoch = (long - short) / 4
    fixed = short - 2 * per_epoch
    print(f"SQL statements: {per_epoch:.2f} per epoch, {fixed:.1f} per trial besides")
    # One upsert per reported epoch that checks the trial's state itself (Optuna alone: a trial
    # lookup, a step lookup and an insert), and no pruning query with pruner "none".
    assert per_epoch <= 1.0
    # Claiming, creating, sampling, recording and finishing a trial: the budget. The
    # running trial is read from the worker's own copy (``storage.owned``), not the database.
    assert fixed <= 20
