"""``fishopt dashboard``: loopback by default, notes and curves in storage, and the real page
rendered by headless Chromium against a real server process."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from chromium import Browser
from fake_studies import build as build_fake
from optuna_dashboard import get_note
from typer.testing import CliRunner

from fishopt import dashboard
from fishopt.cli import app
from fishopt.errors import FishoptError
from fishopt.notes import _TrialRef

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'fake.db'}"
    build_fake(url)
    return url


def test_loopback_hosts_need_no_flag():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert dashboard.check_host(host, allow_remote=False) is None


def test_other_hosts_need_the_flag_and_get_a_warning():
    with pytest.raises(FishoptError, match="--allow-remote"):
        dashboard.check_host("0.0.0.0", allow_remote=False)
    warning = dashboard.check_host("0.0.0.0", allow_remote=True)
    assert warning and "no login" in warning


def test_cli_refuses_a_public_bind_before_touching_anything(tmp_path: Path):
    db = tmp_path / "never.db"
    result = CliRunner().invoke(
        app, ["dashboard", "--host", "0.0.0.0", "--storage", f"sqlite:///{db}"]
    )
    assert result.exit_code != 0 and isinstance(result.exception, FishoptError)
    assert not db.exists()


def test_sync_writes_study_note_trial_notes_and_curves(storage: str):
    store = optuna.storages.RDBStorage(storage)
    st = optuna.load_study(study_name="optimizers", storage=store)
    assert get_note(st) == ""  # made without fishopt.study: no note yet
    sync = dashboard.NoteSync(store)
    sync.study(st)
    note = get_note(st)
    assert "What does the optimizers test study ask?" in note
    assert "90/9/1" in note and "synthetic fish (test)" in note
    trial = st.get_trials()[0]
    body = get_note(_TrialRef(store, st, trial._trial_id))
    assert body.count("\n| ") == len(trial.user_attrs["history"]) + 1  # header + one per epoch
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    graphs = get_plotly_graph_objects(store.get_study_system_attrs(st._study_id))
    assert dashboard.CURVES_ID in graphs and "valid" in graphs[dashboard.CURVES_ID]


def _start(storage: str, tmp_path: Path) -> tuple[subprocess.Popen, str]:
    log = tmp_path / "dashboard.log"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fishopt.cli",
            "dashboard",
            "--storage",
            storage,
            "--port",
            "0",
            "--artifacts-dir",
            str(tmp_path / "artifacts"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        env=env,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        m = re.search(r"at (http://127\.0\.0\.1:\d+/dashboard)", log.read_text())
        if m:
            return proc, m.group(1)
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited: {log.read_text()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"dashboard did not start: {log.read_text()}")


@pytest.mark.slow
def test_chromium_sees_the_studies_in_the_dashboard(storage: str, tmp_path: Path):
    proc, address = _start(storage, tmp_path)
    browser = None
    try:
        browser = Browser()
        browser.goto(address)
        names = ["optimizers", "widths", "depth", "full"]
        check = " && ".join(f"document.body.innerText.includes({n!r})" for n in names)
        assert browser.wait_for(check)
        st_id = optuna.load_study(study_name="widths", storage=storage)._study_id
        browser.goto(f"{address}/studies/{st_id}/note")
        assert browser.wait_for(
            "document.body.innerText.includes('What does the widths test study ask?')"
        )
        browser.goto(f"{address}/studies/{st_id}/trials")
        assert browser.wait_for("document.body.innerText.includes('per-epoch curves')")
        host = address.split("/")[2]
        outside = [u for u in browser.requested_urls() if u.split("/")[2:3] != [host]]
        assert [u for u in outside if not u.startswith("data:")] == []
    finally:
        if browser is not None:
            browser.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
