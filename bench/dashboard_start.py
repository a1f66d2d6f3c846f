"""`python -m bench.dashboard_start --storage URL`: seconds until `fishopt dashboard` serves.

Before it binds, the dashboard writes the notes and curves plots that are missing
(``dashboard.NoteSync``), so its start grows with the studies in the storage. This starts
``fishopt dashboard --port 0`` ``--runs`` times on the given storage. It prints the median time
from the process's start to the line with its address, as one ``key=value`` line.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time

from fishopt.config import mask_url


def start_seconds(storage: str, artifacts: str) -> float:
    began = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "fishopt.cli", "dashboard", "--storage", storage, "--port", "0",
         "--artifacts-dir", artifacts],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            if "at http://" in line:
                return time.monotonic() - began
        raise SystemExit(f"the dashboard exited with {proc.wait()} before serving")
    finally:
        proc.terminate()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.dashboard_start", description=__doc__)
    ap.add_argument("--storage", required=True)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as artifacts:
        s = [start_seconds(args.storage, artifacts) for _ in range(args.runs)]
    print(
        f"dashboard_start_seconds storage={mask_url(args.storage)} "
        f"median={statistics.median(s):.1f} min={min(s):.1f} max={max(s):.1f} runs={args.runs}"
    )


if __name__ == "__main__":
    main()
