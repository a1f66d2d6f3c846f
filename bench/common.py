"""What every figure shares: interleaved A/B rounds, their summary, the machine, the bench data.

A figure is a ratio of two measurements taken in the same run on the same data. Rounds alternate
the order (A then B, then B then A) so that drift in the machine's load, which on a shared box is
large, falls on both sides; the summary is the median ratio with its min-max over the rounds.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fishopt import data
from fishopt.data import synthetic
from fishopt.training.hardware import ISA_FLAGS, cpu_info, usable_cores


@dataclass
class Figure:
    """One row of RESULTS.md: A/B per round, the ratio and whether it meets the target."""

    number: str
    title: str
    a_label: str
    b_label: str
    unit: str
    target: float  # the ratio (A / B) the issue asks for
    target_text: str
    a: list[float] = field(default_factory=list)
    b: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    note: str = ""
    extra: dict = field(default_factory=dict)
    also_met: bool = True  # a second condition of the target (figure 4's final-best gap)

    def add(self, a: float, b: float, ratio: float | None = None) -> None:
        self.a.append(a)
        self.b.append(b)
        self.ratios.append(ratio if ratio is not None else (a / b if b else float("nan")))

    @property
    def median(self) -> float:
        return statistics.median(self.ratios) if self.ratios else float("nan")

    @property
    def met(self) -> bool:
        return bool(self.ratios) and self.median >= self.target and self.also_met

    def line(self) -> str:
        r = self.ratios
        if not r:
            return f"fig {self.number}: not measured"
        return (
            f"fig {self.number} {self.title}: {self.median:.3g} "
            f"(min {min(r):.3g}, max {max(r):.3g}, {len(r)} rounds) "
            f"target {self.target_text} -> {'MET' if self.met else 'NOT MET'}"
        )


def interleave(rounds: int, run_a: Callable[[], float], run_b: Callable[[], float], fig: Figure):
    """Alternate A-B / B-A for ``rounds`` rounds; each callable returns one measurement."""
    for r in range(rounds):
        if r % 2 == 0:
            a = run_a()
            b = run_b()
        else:
            b = run_b()
            a = run_a()
        fig.add(a, b)
        print(f"  round {r + 1}/{rounds}: A {a:.4g}  B {b:.4g}  ratio {fig.ratios[-1]:.3g}")


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def machine(threads: int) -> dict:
    """The machine a figure was measured on, as RESULTS.md prints it."""
    model, flags = cpu_info()
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": model,
        "cores": f"{usable_cores()} usable ({os.cpu_count()} logical on the host)",
        "isa": " ".join(f for f in ISA_FLAGS if f in flags) or "(flags not readable)",
        "native bf16 (AMX/AVX512-BF16)": "yes"
        if flags & {"amx_bf16", "avx512_bf16"}
        else "no: bf16 autocast stays off",
        "torch": f"{torch.__version__}, capability {torch.backends.cpu.get_cpu_capability()}, "
        f"{threads} thread(s) per process unless a figure says otherwise",
        "python": platform.python_version(),
        "load average at start": " ".join(f"{v:.2f}" for v in load),
    }


# ------------------------------------------------------------------------------------ bench data


def photos(cache_dir: Path, per_class: int, size: tuple[int, int] = (590, 445)) -> Path:
    """The synthetic fish photos (Kaggle layout), generated once per (count, size)."""
    w, h = size
    out = cache_dir / "photos" / f"n{per_class}-{w}x{h}"
    return synthetic.generate(out, per_class=per_class, size=size, seed=0)


def features(cache_dir: Path, per_class: int, size: tuple[int, int]) -> data.Dataset:
    """Decoded 59x45 features of a synthetic set (decoded once, then from fishopt's cache)."""
    root = photos(cache_dir, per_class, size)
    ds, _ = data.load(data.SourceSpec("kaggle", path=root), cache_dir / "fishopt-cache")
    return ds


def source_text(per_class: int, size: tuple[int, int]) -> str:
    """The same set as a ``--data`` value, for the commands a reader may re-run."""
    return f"synthetic:{per_class}:{size[0]}x{size[1]}"
