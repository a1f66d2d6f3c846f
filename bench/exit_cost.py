"""`python -m bench.exit_cost`: seconds from a process's last line to its end.

Interpreter shutdown runs a garbage collection over every object still alive. After torch and
its compiler front-end (``torch._dynamo``, which the first optimizer step imports) that pass
costs a noticeable share of a short process, and every fishopt worker, ``--jobs`` child and
command pays it. ``fishopt/shutdown.py`` closes the storages and freezes the collector at exit
instead. This prints, for each case, the median over ``--runs`` fresh interpreters of the
time between the last statement (which prints ``time.time()``) and the parent seeing the
process end. One line per case, ``key=value``.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "torch": "import torch",
    "torch+dynamo": "import torch, torch._dynamo",
    "torch+dynamo,frozen": "import torch, torch._dynamo, gc; gc.freeze()",
    "fishopt.cli": "import fishopt.cli",
    "fishopt.cli,shutdown": "import fishopt.cli; from fishopt import shutdown; shutdown.install()",
}


def exit_seconds(code: str, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        script = f"import sys, time\n{code}\nprint(repr(time.time()), flush=True)"
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
        ended = time.time()
        if proc.returncode != 0:
            raise SystemExit(f"{code!r} failed: {proc.stderr.strip().splitlines()[-1]}")
        out.append(ended - float(proc.stdout.split()[-1]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.exit_cost", description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    for name, code in CASES.items():
        s = exit_seconds(code, args.runs)
        print(
            f"exit_seconds case={name} median={statistics.median(s):.3f} "
            f"min={min(s):.3f} max={max(s):.3f} runs={args.runs}"
        )


if __name__ == "__main__":
    main()
