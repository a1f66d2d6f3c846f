"""A/A calibration: the report's significance call on two arms that are the same algorithm.

Adam and AdamW with weight decay 0 are the same update, so every "significant" difference
between them is a false positive. Real training on scikit-learn's digits (a tiny network, two
epochs), independent seeds per arm as in an optimizers study, many disjoint comparisons of
REPEATS vs REPEATS seeds, each judged by ``analyse_optimizers`` (the function the report pages
and findings call). Its false-positive rate must stay at or below ALPHA within binomial sampling
error: a comparison tool that finds differences between identical arms is broken.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from optuna.distributions import CategoricalDistribution
from optuna.trial import create_trial
from scipy import stats as sps

from fishopt import data
from fishopt.report.analyses import analyse_optimizers
from fishopt.stats import ALPHA, prob_better
from fishopt.training.model import MLPSpec
from fishopt.training.optim import OptimSpec
from fishopt.training.train import TrainConfig, train

ARMS = {
    "Adam": OptimSpec("Adam", lr=1e-2),
    "AdamW": OptimSpec("AdamW", lr=1e-2, weight_decay=0.0),  # AdamW's default decay is 0.01
}
COMPARISONS = 60
REPEATS = 3  # the optimizers study's default


def _trial(optimizer: str, value: float):
    dist = {"optimizer": CategoricalDistribution(list(ARMS))}
    return create_trial(params={"optimizer": optimizer}, distributions=dist, value=value)


@pytest.mark.slow
def test_identical_arms_are_called_different_at_most_alpha_of_the_time(tmp_path: Path):
    ds, _ = data.load(data.parse_source("digits"), tmp_path / "cache")
    sp = data.split(ds.y, (0.5, 0.5, 0.0), seed=0)
    X, y = torch.tensor(ds.X, dtype=torch.float32), torch.tensor(ds.y)
    Xt, yt, Xv, yv = X[sp.train], y[sp.train], X[sp.valid], y[sp.valid]
    model = MLPSpec(X.shape[1], (16,), len(ds.classes))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add overhead on a shared machine
    try:

        def run(arm: str, seed: int) -> float:
            cfg = TrainConfig(epochs=2, batch_size=50, seed=seed)
            return train(model, ARMS[arm], Xt, yt, Xv, yv, cfg).best_valid_f1

        # Arm i's j-th run uses seed j * 2 + i: no two runs share a seed, so the arms are
        # independent samples of one distribution (with shared seeds they would be bit-identical).
        values = {
            arm: [run(arm, 2 * j + i) for j in range(COMPARISONS * REPEATS)]
            for i, arm in enumerate(ARMS)
        }
    finally:
        torch.set_num_threads(threads)
    assert values["Adam"] != values["AdamW"]  # different seeds do make different runs
    assert run("Adam", 7) == run("AdamW", 7)  # and the two arms are the same algorithm

    significant = 0
    interval_excludes_half = 0
    for c in range(COMPARISONS):
        chunk = {arm: v[c * REPEATS : (c + 1) * REPEATS] for arm, v in values.items()}
        trials = [_trial(arm, v) for arm, vs in chunk.items() for v in vs]
        analysis = analyse_optimizers(trials, {})
        significant += sum(cmp.significant for cmp in analysis.comparisons)
        pr = prob_better(chunk["Adam"], chunk["AdamW"], paired=False)
        interval_excludes_half += not (pr.low <= 0.5 <= pr.high)

    # The most false positives a calibrated test gives 99.9% of the time: a broken tool
    # (e.g. one that ignores the spread over seeds) fails this, sampling luck almost never does.
    limit = int(sps.binom.ppf(0.999, COMPARISONS, ALPHA))
    print(
        f"\nA/A: {significant} of {COMPARISONS} comparisons of {REPEATS} vs {REPEATS} seeds "
        f"called significant ({significant / COMPARISONS:.1%}; nominal {ALPHA:.0%}, "
        f"limit {limit}); the P(A > B) bootstrap interval excluded 0.5 in "
        f"{interval_excludes_half} (it describes, it does not test)"
    )
    assert significant <= limit
