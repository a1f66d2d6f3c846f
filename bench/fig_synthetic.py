"""The synthetic set against the seed's real-data curves: does the default model learn alike?

Trains the default configuration (AdamW, 2655-256-128-9, batch 50, 15 epochs, torch's default
learning rate) on the default synthetic set (300 per class, 590x445, seed 0; 59x45 inputs;
split 0.9/0.09/0.01, seed 0) with 3 seeds, prints train and validation accuracy at epoch 15,
times generating and decoding the set into a fresh cache folder, and draws the curves beside the
seed team's Adam curve on the real Kaggle set (docs/synthetic-curves.png).

    python -m bench.fig_synthetic [--seeds 3] [--out docs/synthetic-curves.png]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from fishopt import data
from fishopt.training.model import MLPSpec
from fishopt.training.optim import OptimSpec
from fishopt.training.train import EpochRecord, TrainConfig, train

EPOCHS = 15
# Read off the seed's figure (/work/shared/seed/adadelta-curves.png, "Adam" panel): Adam on the
# real Kaggle set, batch 50, default lr; epochs 1-15, to the nearest 0.01 of its grid.
SEED_TRAIN = (0.47, 0.57, 0.63, 0.61, 0.70, 0.76, 0.79, 0.81, 0.81, 0.84, 0.86, 0.89, 0.92, 0.94,
              0.96)  # fmt: skip
SEED_VALID = (0.46, 0.55, 0.62, 0.55, 0.60, 0.66, 0.68, 0.67, 0.68, 0.68, 0.69, 0.72, 0.72, 0.73,
              0.76)  # fmt: skip


def _generate(cache: Path) -> tuple[data.Dataset, float, float]:
    spec = data.parse_source("synthetic")
    marks: dict[str, float] = {}

    def generated(done: int, total: int) -> None:
        if done == total:
            marks["generated"] = time.perf_counter()

    t0 = time.perf_counter()
    ds, _ = data.load(spec, cache, data.DEFAULT_IMAGE_SIZE, generate_progress=generated)
    t1 = time.perf_counter()
    gen = marks.get("generated", t1) - t0
    return ds, gen, t1 - t0 - gen


def _curves(ds: data.Dataset, seeds: int) -> list[list[EpochRecord]]:
    sp = data.split(ds.y, (0.9, 0.09, 0.01), seed=0)
    X = torch.from_numpy(np.array(ds.X, dtype=np.float32))
    y = torch.from_numpy(np.asarray(ds.y))
    spec = MLPSpec(X.shape[1], (256, 128), len(ds.classes))
    out = []
    for seed in range(seeds):
        cfg = TrainConfig(epochs=EPOCHS, batch_size=50, seed=seed)
        result = train(
            spec, OptimSpec("AdamW"), X[sp.train], y[sp.train], X[sp.valid], y[sp.valid], cfg
        )
        last = result.history[-1]
        print(f"seed {seed}: epoch {EPOCHS} train {last.train_acc:.3f} valid {last.valid_acc:.3f}")
        out.append(result.history)
    return out


def _figure(histories: list[list[EpochRecord]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = np.arange(1, EPOCHS + 1)
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for k, hist in enumerate(histories):
        label = k == 0
        ax.plot(epochs, [h.train_acc for h in hist], color="tab:blue", alpha=0.5,
                label="synthetic, train (per seed)" if label else None)  # fmt: skip
        ax.plot(epochs, [h.valid_acc for h in hist], color="tab:orange", alpha=0.5,
                label="synthetic, valid (per seed)" if label else None)  # fmt: skip
    ax.plot(epochs, SEED_TRAIN, "--", color="tab:blue", lw=2, label="seed, real Kaggle, train")
    ax.plot(epochs, SEED_VALID, "--", color="tab:orange", lw=2, label="seed, real Kaggle, valid")
    ax.set(xlabel="epoch", ylabel="accuracy", ylim=(0, 1.02), xticks=epochs)
    ax.set_title("AdamW 2655-256-128-9, batch 50: synthetic set vs the seed's real-data run")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("docs/synthetic-curves.png"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fishopt-synth-") as tmp:
        ds, gen, decode = _generate(Path(tmp))
    print(f"fresh cache: generated in {gen:.1f}s, decoded in {decode:.1f}s "
          f"({os.cpu_count()} cores)")  # fmt: skip
    histories = _curves(ds, args.seeds)
    train_acc = np.mean([h[-1].train_acc for h in histories])
    valid_acc = np.mean([h[-1].valid_acc for h in histories])
    print(f"mean of {args.seeds}: train {train_acc:.3f} valid {valid_acc:.3f} "
          f"gap {train_acc - valid_acc:.3f} (seed, real set: 0.96 / 0.76 / 0.20)")  # fmt: skip
    _figure(histories, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
