"""A/A test with real training: arms that are one algorithm under different labels.

Real runs of ONE setting (scikit-learn's digits through fishopt's data and training code, a
16-unit MLP, one epoch on 360 images, Adam) with a different seed each, dealt into ARMS arms of
SEEDS runs under different labels, FAMILIES times. Every "X beats Y" that ``claims.decide``
(the procedure every page, summary and CLI uses) makes on such a family is false, so the
number of families with any claim must look like at most ALPHA of them.

The families are independent: every run is trained for exactly one family (FAMILIES x ARMS x
SEEDS = 3,600 runs, seeds 0..3599, dealt in seed order), so the count of families with a false
claim is binomial. Re-dealing one smaller pool into many families would not be: families that
share runs share their false claims, the count would vary more than a binomial, and a band
computed as below would be too narrow. That is why the pool is as large as the families need.

At 3 arms x 3 seeds the procedure's exact level is 5.0% (84 of the 1,680 labellings of 9
distinct runs claim). The test fails when more than LIMIT = binom.ppf(0.99, 400, 0.05) = 31 of
the 400 families make a claim. For a procedure at the nominal 5% that happens with probability
binom.sf(31, 400, 0.05) = 0.7%; for one at twice the nominal rate (10%) with probability
binom.sf(31, 400, 0.10) = 92.5%; at 12.7% (today's pick-the-best-then-Welch+Holm at 11 x 10)
with probability 99.9%. The simulation in test_claims.py / bench.calibration checks the rate
under known noise; this checks it on what training really produces (ties, discreteness, and
any dependence of a score on its seed's place in the deal).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as sps

from fishopt import claims, data
from fishopt.training.model import MLPSpec
from fishopt.training.optim import OptimSpec
from fishopt.training.train import TrainConfig, train

ARMS = 3
SEEDS = 3  # with 2 per arm, the rarest split of 6 runs into 3 arms has probability 1/15 > 5%
FAMILIES = 400
LIMIT = int(sps.binom.ppf(0.99, FAMILIES, claims.ALPHA))
LABELS = ("Adam", "AdamW", "NAdam")  # names only: every arm runs the same Adam


def _runs(cache: Path) -> np.ndarray:
    """Validation macro-F1 of FAMILIES x ARMS x SEEDS real runs, one seed each."""
    ds, _ = data.load(data.parse_source("digits"), cache)
    sp = data.split(ds.y, (0.2, 0.3, 0.5), seed=0)  # small: 7 steps, 540 images to score
    X, y = torch.tensor(ds.X, dtype=torch.float32), torch.tensor(ds.y)
    Xt, yt, Xv, yv = X[sp.train], y[sp.train], X[sp.valid], y[sp.valid]
    model = MLPSpec(X.shape[1], (16,), len(ds.classes))
    optim = OptimSpec("Adam", lr=1e-2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: threads only add overhead on a shared machine
    try:
        scores = [
            train(model, optim, Xt, yt, Xv, yv, TrainConfig(epochs=1, seed=s, precision="fp32"))
            .best_valid_f1
            for s in range(FAMILIES * ARMS * SEEDS)
        ]  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return np.array(scores).reshape(FAMILIES, ARMS, SEEDS)


@pytest.mark.slow(seconds=30)
def test_one_setting_dealt_into_three_arms_claims_at_most_alpha(tmp_path: Path):
    runs = _runs(tmp_path / "cache")
    assert len(np.unique(runs)) > runs.size // 2  # seeds make different runs (some tie)
    false = 0
    for family in runs:
        decision = claims.decide(dict(zip(LABELS, family.tolist(), strict=True)))
        false += bool(decision.claims)
    print(
        f"\nA/A: {false} of {FAMILIES} families of {ARMS} arms x {SEEDS} seeds made a claim "
        f"({false / FAMILIES:.1%}; nominal {claims.ALPHA:.0%}, limit {LIMIT})"
    )
    assert false <= LIMIT
