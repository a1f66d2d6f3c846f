"""Not part of the suite: the CPU one small worker run costs, started as users start it (a fresh
``python -m fishopt.cli``) and as the suite starts it (forked warm, ``forkserver``), in turn.

    PYTHONPATH=. python tests/time_starts.py [ROUNDS]

Each run is ``fishopt worker`` on a new SQLite study of 3 two-epoch trials of digits; it
prints one ``start how=... busy_core_s=... wall_s=...`` line, the machine's busy
core-seconds from /proc/stat (children included), so run it on an otherwise idle machine.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import forkserver
from worker_support import env_for, spec_file


def busy() -> float:
    """Core-seconds the machine has spent busy (user, nice, system, irq, softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    return sum(int(v) for i, v in enumerate(fields[:7]) if i not in (3, 4)) / os.sysconf(
        "SC_CLK_TCK"
    )


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    work = Path(tempfile.mkdtemp(prefix="fishopt-starts-"))
    spec = spec_file(work, epochs=2, n_trials=3, name="starts")
    server = forkserver.server()
    server.collect(0.0)
    for n in range(rounds + 1):  # round 0 fills the digits cache and warms the server
        for how in ("fresh", "warm"):
            db = work / f"{how}{n}.db"
            env = env_for(f"sqlite:///{db}", FISHOPT_CACHE=str(work / "cache"))
            args = ["worker", str(spec), "--data", "digits", "--threads", "1"]
            began_cpu, began = busy(), time.monotonic()
            with (work / f"{how}.log").open("w") as out:
                if how == "fresh":
                    proc = subprocess.Popen(
                        [sys.executable, "-m", "fishopt.cli", *args],
                        cwd=forkserver.REPO, env=env, stdout=out, stderr=out,
                    )  # fmt: skip
                else:
                    proc = forkserver.warm(args, env, out.fileno())
                code = proc.wait()
            if code != 0:
                sys.exit(f"{how} worker exited {code}: {(work / f'{how}.log').read_text()}")
            if n:
                print(
                    f"start how={how} round={n} busy_core_s={busy() - began_cpu:.2f} "
                    f"wall_s={time.monotonic() - began:.2f}"
                )


if __name__ == "__main__":
    main()
