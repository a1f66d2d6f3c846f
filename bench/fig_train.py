"""Figures 1, 2 and 7: training throughput against the seed loop, against the machine's GEMM,
and in bf16 autocast against fp32 per batch size (what ``precision="auto"`` decides on)."""

from __future__ import annotations

import time

import numpy as np
import torch

from bench.common import Figure, interleave
from bench.seed import train_seed_style
from fishopt import data
from fishopt.training.hardware import native_bf16
from fishopt.training.model import MLPSpec, macs_per_sample
from fishopt.training.optim import OptimSpec
from fishopt.training.train import TrainConfig, resolve_precision, train

HIDDEN = (256, 128)
BF16_BATCHES = (32, 50, 64, 128, 256)
GEMM_N = 2048  # a square fp32 GEMM big enough to run at the BLAS's best rate


def _tensors(ds: data.Dataset) -> tuple[torch.Tensor, ...]:
    sp = data.split(ds.y, seed=0)
    X = torch.from_numpy(np.array(ds.X, dtype=np.float32))  # a writable copy of the memory map
    y = torch.from_numpy(np.ascontiguousarray(ds.y))
    return X[sp.train], y[sp.train], X[sp.valid], y[sp.valid]


def _fishopt_rate(
    spec: MLPSpec, t: tuple, epochs: int, batch: int, precision: str = "auto"
) -> float:
    """Training samples per second of fishopt's trainer, per-epoch validation included."""
    X, y, Xv, yv = t
    cfg = TrainConfig(epochs=epochs, batch_size=batch, seed=0, precision=precision)
    t0 = time.perf_counter()
    train(spec, OptimSpec("AdamW"), X, y, Xv, yv, cfg)
    seconds = time.perf_counter() - t0
    return epochs * (len(X) // batch) * batch / seconds


def _seed_rate(spec: MLPSpec, t: tuple, epochs: int) -> float:
    X, y, Xv, yv = t
    t0 = time.perf_counter()
    train_seed_style(spec, X, y, Xv, yv, epochs)
    return epochs * len(X) / (time.perf_counter() - t0)


def gemm_gflops(n: int = GEMM_N, repeats: int = 4) -> float:
    """fp32 GEMM GFLOP/s in this process, with its thread setting: the machine's reachable peak."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm the BLAS (thread pool, packing buffers)
    t0 = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - t0) / 1e9


def figure1(ds: data.Dataset, rounds: int, epochs: int) -> Figure:
    t = _tensors(ds)
    spec = MLPSpec(ds.X.shape[1], HIDDEN, len(ds.classes))
    fig = Figure(
        "1",
        "training samples/s, fishopt trainer / seed-style DataLoader loop",
        "fishopt train()",
        "seed loop (per-sample Dataset + DataLoader, per-epoch metrics over train and valid)",
        "samples/s",
        2.0,
        ">= 2x",
    )
    _fishopt_rate(spec, t, 1, 50)  # warm-up: first-touch allocations, oneDNN/MKL init
    interleave(
        rounds, lambda: _fishopt_rate(spec, t, epochs, 50), lambda: _seed_rate(spec, t, epochs), fig
    )
    fig.extra = {
        "model": "2655-256-128-9, AdamW (fishopt: fused step), batch 50",
        "train samples": len(t[0]),
        "epochs per measurement": epochs,
    }
    return fig


def figure2(ds: data.Dataset, rounds: int, epochs: int, batch: int, target: float) -> Figure:
    t = _tensors(ds)
    spec = MLPSpec(ds.X.shape[1], HIDDEN, len(ds.classes))
    flops_per_sample = 6 * macs_per_sample(spec)
    fig = Figure(
        f"2 (batch {batch})",
        f"training GFLOP/s at batch {batch} / fp32 GEMM GFLOP/s",
        "6 x MACs x samples/s of fishopt train()",
        f"torch fp32 {GEMM_N}x{GEMM_N} GEMM",
        "GFLOP/s",
        target,
        f">= {target:.0%}",
    )
    _fishopt_rate(spec, t, 1, batch)
    interleave(
        rounds,
        lambda: flops_per_sample * _fishopt_rate(spec, t, epochs, batch) / 1e9,
        gemm_gflops,
        fig,
    )
    fig.extra = {
        "MACs per sample": macs_per_sample(spec),
        "precision": f"auto: {resolve_precision('auto', 'cpu', batch)} on this CPU",
        "epochs per measurement": epochs,
    }
    return fig


def figure7(ds: data.Dataset, rounds: int, epochs: int) -> list[Figure]:
    """bf16 autocast / fp32 samples/s at each batch size, and whether ``auto`` chose the faster.

    One figure per batch size. Where ``auto`` picks bf16 the target is bf16 >= fp32; where it
    keeps fp32 the target is that bf16 would not have been faster. A batch size whose figure
    is not met is where the threshold (``BF16_MIN_BATCH``) is wrong for this CPU.
    """
    t = _tensors(ds)
    spec = MLPSpec(ds.X.shape[1], HIDDEN, len(ds.classes))
    native = native_bf16()
    figs = []
    for batch in BF16_BATCHES:
        picks = resolve_precision("auto", "cpu", batch)
        fig = Figure(
            f"7 (batch {batch})",
            f"training samples/s at batch {batch}, bf16 autocast / fp32",
            "fishopt train(), precision='bf16'",
            "fishopt train(), precision='fp32'",
            "samples/s",
            1.0 if picks == "bf16" else 0.0,
            f"auto picks {picks} here: "
            + ("bf16 >= fp32" if picks == "bf16" else "met if bf16 is not faster (< 1x)"),
        )
        print(f"  batch {batch} (auto: {picks}):")
        _fishopt_rate(spec, t, 1, batch, "bf16")  # warm-up: oneDNN's bf16 kernels
        interleave(
            rounds,
            lambda b=batch: _fishopt_rate(spec, t, epochs, b, "bf16"),
            lambda b=batch: _fishopt_rate(spec, t, epochs, b, "fp32"),
            fig,
        )
        if picks == "fp32":
            fig.also_met = fig.median < 1.0
        fig.extra = {
            "model": "2655-256-128-9, AdamW (fused step); weights and optimizer state fp32",
            "native bf16 on this CPU": "yes" if native else "no: oneDNN emulates bf16",
            "epochs per measurement": epochs,
        }
        figs.append(fig)
    return figs
