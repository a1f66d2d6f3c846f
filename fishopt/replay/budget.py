"""What replays say: success and regret of a way to search, against its budget.

A replay succeeds at a budget when the configuration it declares best by then has a true mean
(over the table's seeds) within the margin of the best configuration's mean. The success
probability is the share of replays that succeed, with an exact (Clopper-Pearson) 95% interval
(replays are independent Bernoulli draws, so a binomial interval is the right one; its coverage
at 200 replays is checked in tests/replay/test_replay.py). The interval is over the replays'
randomness (the sampler's seed and the seeds drawn), given the table: it says nothing of how the
table itself, 3 seeds per configuration, might differ on a second training; the regret is the
mean shortfall of the declared configuration's true mean from the best, in F1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fishopt.claims.intervals import accuracy_interval
from fishopt.replay.run import Replay
from fishopt.replay.table import Table


@dataclass(frozen=True)
class Budget:
    """One arm at one budget, over its replays."""

    trials: int  # trials run (at most: a replay that spent its epoch cap stopped earlier)
    epochs: float  # mean epochs trained by then
    epochs_max: int
    successes: int
    replays: int
    low: float  # exact 95% interval of the success probability
    high: float
    regret: float  # mean shortfall of the declared configuration's true mean, in F1

    @property
    def success(self) -> float:
        return self.successes / self.replays if self.replays else float("nan")


def _judge(table: Table, declared: np.ndarray, margin: float) -> tuple[np.ndarray, np.ndarray]:
    """(success, regret) per declaration; nothing declared yet (-1) is a failure, with the
    regret of a configuration picked at random."""
    truth = table.truth
    best = truth.max()
    some = declared >= 0
    picked = np.where(some, truth[np.maximum(declared, 0)], truth.mean())
    return some & (picked >= best - margin - 1e-12), best - picked


def _budget(
    table: Table, rs: Sequence[Replay], index: np.ndarray, margin: float, trials: int
) -> Budget:
    """The replays judged at trial ``index[i]`` of replay i (-1: before its first trial)."""
    declared = np.array([r.declared[i] if i >= 0 else -1 for r, i in zip(rs, index, strict=True)])
    epochs = np.array([r.epochs[i] if i >= 0 else 0 for r, i in zip(rs, index, strict=True)])
    ok, regret = _judge(table, declared, margin)
    success = accuracy_interval(int(ok.sum()), len(rs))  # exact (Clopper-Pearson), 95%
    low, high = (success.low, success.high) if success else (float("nan"), float("nan"))
    return Budget(
        trials,
        float(epochs.mean()),
        int(epochs.max()),
        int(ok.sum()),
        len(rs),
        float(low),
        float(high),
        float(regret.mean()),
    )


def at_trials(
    table: Table, rs: Sequence[Replay], margin: float, budgets: Sequence[int]
) -> list[Budget]:
    """Success after each number of trials in ``budgets`` (a replay that stopped earlier, on
    its epoch cap, counts with its last declaration)."""
    return [
        _budget(table, rs, np.array([min(b, len(r.declared)) - 1 for r in rs]), margin, b)
        for b in budgets
    ]


def at_epochs(table: Table, rs: Sequence[Replay], margin: float, epochs: float) -> Budget:
    """Success once ``epochs`` are spent: each replay's declaration after its last trial that
    ended within them (none yet: a failure). A replay that ran out of trials before spending
    them counts with its last declaration. ``trials`` is then the median trials run."""
    index = np.array([int(np.searchsorted(r.epochs, epochs, side="right")) - 1 for r in rs])
    return _budget(table, rs, index, margin, int(np.median(index + 1)))


def trial_budgets(max_trials: int) -> list[int]:
    """5, 10, 20, 40, ... below ``max_trials`` (none within a quarter of it), and
    ``max_trials`` itself."""
    out, b = [], 5
    while b * 1.25 < max_trials:
        out.append(b)
        b *= 2
    return [*out, max_trials]


# ------------------------------------------------------------------------------ showing it


def pct(p: float) -> str:
    return f"{100 * p:.0f}%"


def row_text(arm: str, b: Budget) -> str:
    """One line of the 80-column table."""
    ci = f"{pct(b.success)} [{100 * b.low:.0f}, {100 * b.high:.0f}]"
    return f"{arm:<22} {b.trials:>6} {b.epochs:>8.0f} {ci:>15} {100 * b.regret:>7.2f}"


HEADER = f"{'arm':<22} {'trials':>6} {'epochs':>8} {'success [95%]':>15} {'regret':>7}"


def key_values(table: str, arm: str, b: Budget) -> str:
    """The same figures as one line a script can read."""
    return (
        f"replay table={table} arm={arm} trials={b.trials} epochs={b.epochs:.1f} "
        f"epochs_max={b.epochs_max} success={b.success:.4f} low={b.low:.4f} high={b.high:.4f} "
        f"regret={b.regret:.5f} replays={b.replays}"
    )


def plot(
    panels: Mapping[str, Mapping[str, Sequence[Budget]]],
    out: Path,
    marks: Mapping[str, float] | None = None,
    margins: Mapping[str, float] | None = None,
) -> Path:
    """Success against epochs spent, one panel per table, one line per arm (shaded: the 95%
    interval); ``marks`` draws a vertical line per table (e.g. a third of the grid's epochs)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 4.4), squeeze=False)
    for ax, (name, arms) in zip(axes[0], panels.items(), strict=True):
        for arm, budgets in arms.items():
            x = [b.epochs for b in budgets]
            (line,) = ax.plot(x, [b.success for b in budgets], marker="o", ms=3, label=arm)
            ax.fill_between(
                x,
                [b.low for b in budgets],
                [b.high for b in budgets],
                alpha=0.15,
                color=line.get_color(),
            )
        if marks and name in marks:
            ax.axvline(marks[name], color="grey", ls="--", lw=1)
            ax.text(
                marks[name],
                0.5,
                "a third of the grid ",
                color="grey",
                fontsize=8,
                rotation=90,
                ha="right",
                va="center",
            )
        ax.axhline(0.8, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("epochs trained (mean over replays)")
        ax.set_ylabel("P(declared config within margin of best)")
        margin = f", margin {100 * margins[name]:.1f} F1 points" if margins else ""
        ax.set_title(f"{name}{margin}", fontsize=10)
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
