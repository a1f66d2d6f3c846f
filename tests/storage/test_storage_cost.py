"""What one trial costs the database: SQL statements counted with a SQLAlchemy event.

With cheap trials the storage round-trips, not the training, decide how much of the machine a
study spends on training (bench figure 5). The per-epoch cost is the difference between the
same study run with more and fewer epochs; the rest is the per-trial cost.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import optuna
import pytest
from sqlalchemy import event

from fishopt.search import loop
from fishopt.search.session import Options, open_session
from fishopt.storage import fence
from fishopt.storage.connect import open_storage

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


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_pruner_read_does_not_grow_with_the_epochs_of_the_study(tmp_path: Path) -> None:
    """MedianPruner reads every finished trial's epochs at every report. Two workers on one
    SQLite file: at each of one worker's reports, the statements run and the values bound to
    them (trial ids in IN lists) stay the same from the first trials to the last, while the
    study's finished epochs grow 40-fold and the other worker's trial adds an epoch between."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'prune.db'}"
    pruner = optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        a = optuna.create_study(
            study_name="prune", storage=open_storage(url), direction="maximize", pruner=pruner
        )
        b = optuna.load_study(study_name="prune", storage=open_storage(url), pruner=pruner)
    engine = fence.backend_of(a).engine  # type: ignore[attr-defined]
    cost: list[tuple[int, int]] = []  # per report of a: (statements, values bound)
    current = [0, 0]

    def on_statement(_conn, _cursor, _statement, parameters, *_rest) -> None:
        current[0] += 1
        current[1] += len(parameters or ())

    event.listen(engine, "before_cursor_execute", on_statement)
    for n in range(40):
        mine, theirs = a.ask(), b.ask()
        for step in range(8):
            theirs.report(0.4 + 0.01 * step, step)  # the other worker's trial changes
            mine.report(0.5 + 0.01 * ((n * 7 + step) % 5), step)
            current[:] = [0, 0]
            mine.should_prune()
            cost.append((current[0], current[1]))
        a.tell(mine, 0.5)
        b.tell(theirs, 0.4)
    event.remove(engine, "before_cursor_execute", on_statement)
    first, last = cost[8:80], cost[-72:]  # trials 2-10 and 32-40
    print(f"per report: first trials {max(first)}, last trials {max(last)} (statements, values)")
    assert max(last) <= max(first)
    # One query says what changed; one reads the epoch the other worker added since. At a
    # trial's first report the other worker's trial that ended and the one it started are read
    # whole, once (one load: 5 plain statements, the trials with their values, then each part;
    # cheaper than Optuna's 3 through the ORM, whose objects cost more than the queries).
    # Finished trials are never read again.
    assert all(s <= 2 for i, (s, _) in enumerate(cost) if i % 8)
    assert max(s for s, _ in cost) <= 6


@pytest.mark.filterwarnings("ignore:Heartbeat of storage")
def test_a_claim_reads_the_trials_once_until_its_first_report(tmp_path: Path) -> None:
    """Inside ``Storage.claiming`` (the loop, under its lock, has just failed dead trials):
    ``ask`` still pops a trial another worker queued (its read is real); the sampler's reads
    after it and Optuna's stale check cost no statement, so what another worker wrote since is
    not seen yet; the trial's first report ends the claim and the pruner's read is real."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{tmp_path / 'claim.db'}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        a = optuna.create_study(study_name="claim", storage=open_storage(url))
        b = optuna.load_study(study_name="claim", storage=open_storage(url))
    backend = fence.backend_of(a)
    count = [0]

    def on_statement(*_args: object) -> None:
        count[0] += 1

    event.listen(backend.engine, "before_cursor_execute", on_statement)  # type: ignore[attr-defined]
    b.enqueue_trial({"x": 0.25})

    def numbers() -> set[int]:
        return {t.number for t in a.get_trials(deepcopy=False)}

    with backend.claiming():  # type: ignore[attr-defined]
        mine = a.ask()
        assert mine.suggest_float("x", 0, 1) == 0.25  # the queued trial, popped
        theirs = b.ask()
        theirs.report(0.1, 0)
        before = count[0]
        assert theirs.number not in numbers()
        assert backend._get_stale_trial_ids(fence.study_id(a)) == []  # type: ignore[attr-defined]
        assert count[0] == before
        mine.report(0.5, 0)  # the claim ends at the trial's first report
        assert theirs.number in numbers()
    before = count[0]
    backend._get_stale_trial_ids(fence.study_id(a))  # type: ignore[attr-defined]
    assert count[0] > before  # outside a claim, a real check
