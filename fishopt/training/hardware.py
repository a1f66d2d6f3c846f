"""What this machine's CPU can do, read once from the OS: model name, ISA flags, bf16 support.

The trainer uses it to decide whether bf16 autocast pays (only with native bf16 instructions:
AMX or AVX512-BF16; elsewhere oneDNN emulates bf16 and is slower than fp32), and the benchmarks
print it beside every figure, since a throughput number means little without the machine.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

# Flags worth printing next to a throughput figure (Linux /proc/cpuinfo names).
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})


@functools.cache
def cpu_info() -> tuple[str, frozenset[str]]:
    """(model name, flags) from /proc/cpuinfo; (platform.processor(), {}) where there is none."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU", frozenset()
    model, flags = "unknown CPU", frozenset[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model == "unknown CPU":
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
    return model, flags


def native_bf16() -> bool:
    """True where the CPU executes bf16 matmuls natively (AMX or AVX512-BF16)."""
    return bool(cpu_info()[1] & NATIVE_BF16_FLAGS)


def usable_cores() -> int:
    """Cores this process may run on (the affinity mask), not the host's total."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def set_threads(threads: int | None) -> int:
    """Torch threads for this process, set before any tensor work (later calls are ignored)."""
    import torch

    n = threads or os.cpu_count() or 1
    torch.set_num_threads(n)
    return n
