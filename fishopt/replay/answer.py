"""``fishopt replay STUDY``: how many trials a search of this study's space would have needed.

The user's own finished grid becomes a table; random search, TPE, TPE with median pruning and
the ``full`` study's default sampler and pruner are replayed on it at growing budgets, and a
one-seed grid beside them. The answer is a success-against-budget table and one sentence:
"with 20 TPE trials and median pruning you would have come within 1.0 F1 points of the best
configuration in 83% of runs".
"""

from __future__ import annotations

import textwrap
import time
from dataclasses import dataclass

from fishopt.errors import FishoptError
from fishopt.replay import arms as catalog
from fishopt.replay import budget, run
from fishopt.replay.budget import Budget
from fishopt.replay.table import Table, from_study, replayable_error

TARGET = 0.8  # the success the sentence looks for


@dataclass(frozen=True)
class Answer:
    table: Table
    margin: float
    asked: float  # the margin asked for; the one used is never below the seed noise
    replays: int
    rows: dict[str, list[Budget]]  # per arm, at growing trial budgets
    grid: Budget  # the one-seed grid, every point once
    default: run.Arm
    seconds: float

    def sentence(self) -> str:
        """The default arm's smallest budget reaching 80% success (else its largest)."""
        rows = self.rows[self.default.name]
        hit = next((b for b in rows if b.success >= TARGET), None)
        b = hit or rows[-1]
        share = b.epochs / max(self.table.grid_epochs(), 1)
        start = "with" if hit else "even with"
        return (
            f"{start} {catalog.in_words(self.default, b.trials)} you would have come within "
            f"{100 * self.margin:.1f} F1 points of the best configuration in "
            f"{budget.pct(b.success)} of runs (95% interval {100 * b.low:.0f}-{100 * b.high:.0f}"
            f"%), training {b.epochs:.0f} epochs on average ({share:.0%} of a one-seed grid's)"
        )

    def lines(self) -> list[str]:
        t = self.table
        truth = t.truth
        best = int(truth.argmax())
        raised = (
            f" (asked {100 * self.asked:.1f}; raised to the seed noise)"
            if self.margin > self.asked
            else ""
        )
        out = [
            f"{t.name}: {t.n_configs} configurations x {t.n_seeds} seeds x {t.epochs} epochs; "
            f"best mean F1 {truth[best]:.3f} ({t.label(best)})",
            f"margin {100 * self.margin:.1f} F1 points{raised}; seed noise (median standard "
            f"error of a configuration's mean) {100 * t.noise():.2f}; "
            f"{t.near_best(self.margin)} configuration(s) within the margin",
            f"success: the configuration a search declares best has a mean within the margin "
            f"of the best's; {self.replays} replays per arm, 95% exact intervals, regret in "
            "F1 points",
            "",
            budget.HEADER,
        ]
        for name, rows in self.rows.items():
            out += [budget.row_text(name, b) for b in rows]
        out.append(budget.row_text("grid, one seed", self.grid))
        out += ["", self.sentence() + f" ({self.seconds:.0f}s)"]
        return [wrapped for line in out for wrapped in textwrap.wrap(line, 80) or [""]]


def answer(table: Table, margin: float = 0.01, replays: int = 100, processes: int = 2) -> Answer:
    """Replay random search, TPE alone and with median pruning, and the ``full`` study's default
    on ``table`` at growing budgets, and a one-seed grid."""
    if replays < 1:
        raise FishoptError(f"--replays {replays}: need at least 1")
    if margin < 0:
        raise FishoptError(f"--margin {100 * margin:g}: must be >= 0 F1 points")
    started = time.perf_counter()
    used = max(margin, table.noise())
    default = catalog.full_default()
    arms = [catalog.ARMS[n] for n in ("random", "tpe", "tpe+median")]
    arms += [default] if default not in arms else []
    cap = table.n_configs
    grid = catalog.ARMS["grid"]
    caps = {a.name: cap for a in arms} | {grid.name: table.n_configs}
    replayed = run.replays(table, [*arms, grid], replays, caps, processes=processes)
    budgets = budget.trial_budgets(cap)
    rows = {a.name: budget.at_trials(table, replayed[a.name], used, budgets) for a in arms}
    one_seed = budget.at_trials(table, replayed[grid.name], used, [table.n_configs])[0]
    return Answer(
        table, used, margin, replays, rows, one_seed, default, time.perf_counter() - started
    )


def answer_study(
    url: str, name: str, margin: float = 0.01, replays: int = 100, processes: int = 2
) -> Answer:
    """The answer for a finished grid study in storage (one-line errors otherwise)."""
    from fishopt.search import studies
    from fishopt.search.session import recorded_spec
    from fishopt.storage.connect import open_storage

    st = studies.load(name, open_storage(url, heartbeat=False), url)
    identity = st.user_attrs.get(studies.ATTR) or {}
    error = replayable_error(name, identity.get("spec") or {})
    if error is not None:  # before reading the spec: a search study need not be complete
        raise error
    table = from_study(st, recorded_spec(st))
    return answer(table, margin, replays, processes)
