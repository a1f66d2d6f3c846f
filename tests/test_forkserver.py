"""The fork server the suite starts its workers from (tests/forkserver.py) gives a child what a
fresh ``python -m`` would: same argv, path, folder, environment and stdin, and exit codes and
signals that read as ``subprocess.Popen``'s. A drift here would make every worker test test
something else than what users run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import forkserver
import pytest

PROBE = """
import ctypes, json, os, sys
sig = ctypes.c_int()
ctypes.CDLL(None).prctl(2, ctypes.byref(sig))  # 2: PR_GET_PDEATHSIG
seen = {
    "name": __name__, "argv": sys.argv, "path0": sys.path[0], "cwd": os.getcwd(),
    "marker": os.environ.get("PROBE_MARKER"), "stdin": sys.stdin.read(),
    "deathsig": sig.value, "unbuffered": os.environ.get("PYTHONUNBUFFERED"),
}
print(json.dumps(seen))
print("to stderr", file=sys.stderr)
if len(sys.argv) > 1 and sys.argv[1] == "sleep":
    import time
    time.sleep(60)
sys.exit(int(sys.argv[2]) if len(sys.argv) > 2 else 0)
"""


def _env(folder: Path) -> dict[str, str]:
    server = forkserver.server()
    env = {k: v for k, v in os.environ.items() if k not in forkserver.AT_START}
    env.update({k: v for k, v in server.at_start.items() if v is not None})
    return {**env, "PROBE_MARKER": str(folder)}


def _forked(folder: Path, *args: str) -> tuple[forkserver.Forked, Path, Path]:
    out, err = folder / "out", folder / "err"
    with out.open("w") as o, err.open("w") as e:
        proc = forkserver.server().spawn(
            list(args), folder, _env(folder), o.fileno(), e.fileno(), module="probe"
        )
    return proc, out, err


def test_a_forked_child_sees_what_a_fresh_interpreter_sees(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    fresh = subprocess.run(
        [sys.executable, "-m", "probe", "run", "3"], cwd=tmp_path, env=_env(tmp_path),
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
        preexec_fn=forkserver._die_with_parent,
    )  # fmt: skip
    proc, out, err = _forked(tmp_path, "run", "3")
    assert proc.wait(timeout=60) == 3 == fresh.returncode
    assert json.loads(out.read_text()) == json.loads(fresh.stdout)
    assert json.loads(fresh.stdout)["argv"] == [str(tmp_path / "probe.py"), "run", "3"]
    assert err.read_text() == fresh.stderr == "to stderr\n"


def test_a_forked_child_answers_signals_and_waits_as_popen_does(tmp_path: Path) -> None:
    (tmp_path / "probe.py").write_text(PROBE)
    proc, out, _ = _forked(tmp_path, "sleep")
    deadline = time.monotonic() + 60
    while not out.read_text() and time.monotonic() < deadline:  # it has started
        time.sleep(0.05)
    assert proc.poll() is None
    with pytest.raises(subprocess.TimeoutExpired):
        proc.wait(timeout=0.2)
    assert Path(f"/proc/{proc.pid}/cmdline").exists()
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == -signal.SIGTERM
    proc.kill()  # gone: no signal goes to a pid that may be someone else's now


def test_a_child_that_needs_another_interpreter_start_is_refused(tmp_path: Path) -> None:
    env = {**_env(tmp_path), "PYTHONWARNINGS": "ignore::ResourceWarning:probe"}
    with pytest.raises(ValueError, match="PYTHONWARNINGS"):
        forkserver.server().spawn(["x"], tmp_path, env, 1, 2, module="probe")
