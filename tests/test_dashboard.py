"""``fishopt dashboard``: loopback by default, a login beyond it, a read-only mode, notes and
curves in storage, and the real page rendered by headless Chromium and fetched by curl against
real server processes."""

from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import optuna
import pytest
from chromium import Browser
from fake_studies import build as build_fake
from needs import executable
from optuna_dashboard import get_note
from typer.testing import CliRunner

from fishopt import config, dashboard
from fishopt.cli import app
from fishopt.config import DashboardLogin
from fishopt.errors import FishoptError
from fishopt.storage import fence

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "tuna-salmon-" + os.urandom(6).hex()  # never a fixed secret, even in a test
LOGIN = DashboardLogin("fishopt", PASSWORD, "test")


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('dash') / 'fake.db'}"
    build_fake(url)
    return url


def test_loopback_hosts_need_no_flag_and_no_login():
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        assert dashboard.check_host(host, allow_remote=False, login=None) is None


def test_other_hosts_need_the_flag_and_a_login_and_get_a_warning():
    with pytest.raises(FishoptError, match="--allow-remote"):
        dashboard.check_host("0.0.0.0", allow_remote=False, login=LOGIN)
    with pytest.raises(FishoptError, match=config.ENV_DASHBOARD_PASSWORD):
        dashboard.check_host("0.0.0.0", allow_remote=True, login=None)
    warning = dashboard.check_host("0.0.0.0", allow_remote=True, login=LOGIN)
    assert warning and "plain HTTP" in warning and PASSWORD not in warning


@pytest.mark.parametrize("allow", [[], ["--allow-remote"]])
def test_cli_refuses_a_public_bind_before_touching_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, allow: list[str]
):
    for name in (config.ENV_DASHBOARD_PASSWORD, config.ENV_DASHBOARD_PASSWORD_FILE):
        monkeypatch.delenv(name, raising=False)
    db = tmp_path / "never.db"
    result = CliRunner().invoke(
        app, ["dashboard", "--host", "0.0.0.0", *allow, "--storage", f"sqlite:///{db}"]
    )
    assert result.exit_code != 0 and isinstance(result.exception, FishoptError)
    assert ("needs a login" in str(result.exception)) == bool(allow)
    assert not db.exists()


def test_create_refuses_a_public_bind_without_a_login(tmp_path: Path):
    """The library refuses too, so no other caller can serve the unguarded app."""
    db = tmp_path / "never.db"
    with pytest.raises(FishoptError, match="needs a login"):
        dashboard.create(f"sqlite:///{db}", tmp_path / "artifacts", host="0.0.0.0", port=0)
    assert not db.exists()


# ------------------------------------------------------------------------------ the login


def test_login_comes_from_the_environment_or_nowhere():
    assert config.resolve_dashboard_login(env={}) is None
    login = config.resolve_dashboard_login(env={config.ENV_DASHBOARD_PASSWORD: PASSWORD})
    assert login == DashboardLogin("fishopt", PASSWORD, config.ENV_DASHBOARD_PASSWORD)
    assert PASSWORD not in repr(login)
    named = config.resolve_dashboard_login(
        env={config.ENV_DASHBOARD_PASSWORD: PASSWORD, config.ENV_DASHBOARD_USER: "ana"}
    )
    assert named is not None and named.user == "ana"
    # The password is one of the secrets every message is cleaned of.
    env = {config.ENV_DASHBOARD_PASSWORD: PASSWORD}
    assert config.redact(f"oops {PASSWORD}", config.secrets(env=env)) == "oops ***"


def test_login_from_a_private_file(tmp_path: Path):
    secret = tmp_path / "dashboard-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o640)
    login = config.resolve_dashboard_login(env={config.ENV_DASHBOARD_PASSWORD_FILE: str(secret)})
    assert login is not None and login.password == PASSWORD  # trailing newline dropped
    assert str(secret) in login.source


@pytest.mark.parametrize(
    "case, message",
    [
        ("world-readable", "open to every user"),
        ("missing", "No such file"),
        ("both", "set one"),
        ("short", "too short"),
        ("colon user", "cannot contain ':'"),
    ],
)
def test_bad_logins_are_one_line_errors(tmp_path: Path, case: str, message: str):
    secret = tmp_path / "dashboard-password"
    secret.write_text(PASSWORD)
    secret.chmod(0o644 if case == "world-readable" else 0o600)
    env = {config.ENV_DASHBOARD_PASSWORD_FILE: str(secret)}
    if case == "missing":
        env = {config.ENV_DASHBOARD_PASSWORD_FILE: str(tmp_path / "nope")}
    elif case == "both":
        env[config.ENV_DASHBOARD_PASSWORD] = PASSWORD
    elif case == "short":
        env = {config.ENV_DASHBOARD_PASSWORD: "fish"}
    elif case == "colon user":
        env[config.ENV_DASHBOARD_USER] = "a:b"
    with pytest.raises(FishoptError, match=message) as caught:
        config.resolve_dashboard_login(env=env)
    text = str(caught.value)
    assert "\n" not in text and PASSWORD not in text and "fish\n" not in text


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_authorized_accepts_only_the_exact_login():
    assert dashboard.authorized(_basic("fishopt", PASSWORD), LOGIN)
    assert dashboard.authorized("basic " + _basic("fishopt", PASSWORD)[6:], LOGIN)
    for header in (
        None,
        "",
        _basic("fishopt", PASSWORD + "x"),
        _basic("fishopt", PASSWORD[:-1]),
        _basic("Fishopt", PASSWORD),
        _basic("", PASSWORD),
        "Basic " + base64.b64encode(f"fishopt{PASSWORD}".encode()).decode(),  # no colon
        "Basic not-base64!",
        f"Bearer {PASSWORD}",
    ):
        assert not dashboard.authorized(header, LOGIN), header


def _call(wsgi_app, method: str, path: str, authorization: str | None = None) -> tuple[str, bytes]:
    """One request through a WSGI app, in process."""
    environ: dict = {"REQUEST_METHOD": method, "PATH_INFO": path, "wsgi.input": io.BytesIO()}
    if authorization:
        environ["HTTP_AUTHORIZATION"] = authorization
    setup_testing_defaults(environ)
    status: list[str] = []
    body = b"".join(wsgi_app(environ, lambda s, headers, exc_info=None: status.append(s)))
    return status[0], body


def test_guard_in_front_of_the_real_optuna_dashboard(tmp_path: Path):
    """optuna-dashboard really deletes a study on DELETE; the login and read-only stop it."""
    from optuna_dashboard import wsgi

    url = f"sqlite:///{tmp_path / 'g.db'}"
    for name in ("keep", "lose"):
        optuna.create_study(study_name=name, storage=url)
    ids = {s.study_name: s._study_id for s in optuna.get_all_study_summaries(url)}
    inner = wsgi(optuna.storages.RDBStorage(url))
    auth = _basic("fishopt", PASSWORD)

    guarded = dashboard.Guard(inner, login=LOGIN, read_only=True)
    assert _call(guarded, "GET", "/api/studies")[0].startswith("401")
    assert _call(guarded, "GET", "/api/studies", _basic("fishopt", "wrong"))[0].startswith("401")
    status, body = _call(guarded, "GET", "/api/studies", auth)
    assert status.startswith("200") and b'"keep"' in body
    assert _call(guarded, "DELETE", f"/api/studies/{ids['keep']}")[0].startswith("401")
    assert _call(guarded, "DELETE", f"/api/studies/{ids['keep']}", auth)[0].startswith("405")
    assert _call(guarded, "POST", "/api/studies", auth)[0].startswith("405")

    writable = dashboard.Guard(inner, login=LOGIN, read_only=False)
    assert _call(writable, "DELETE", f"/api/studies/{ids['lose']}", auth)[0].startswith("204")
    assert optuna.study.get_all_study_names(url) == ["keep"]


def test_sync_writes_study_note_trial_notes_and_curves(tmp_path: Path):
    # Its own studies: a dashboard started on the module's (by a test before this one, in
    # the same process) has written their notes already.
    storage = f"sqlite:///{tmp_path / 'sync.db'}"
    build_fake(storage, kinds=("optimizers",))
    store = optuna.storages.RDBStorage(storage)
    st = optuna.load_study(study_name="optimizers", storage=store)
    assert get_note(st) == ""  # made without fishopt.study: no note yet
    sync = dashboard.NoteSync(store)
    sync.study(st)
    note = get_note(st)
    assert "What does the optimizers test study ask?" in note
    assert "90/9/1" in note and "synthetic fish (test)" in note
    trial = st.get_trials()[0]
    body = get_note(fence.trial_ref(st, trial))
    assert body.count("\n| ") == len(trial.user_attrs["history"]) + 1  # header + one per epoch
    from optuna_dashboard._custom_plot_data import get_plotly_graph_objects

    graphs = get_plotly_graph_objects(store.get_study_system_attrs(st._study_id))
    assert dashboard.CURVES_ID in graphs and "valid" in graphs[dashboard.CURVES_ID]


def test_a_restarted_dashboard_writes_only_what_finished_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """Its first pass reads each study's notes once and writes nothing it wrote before (nor a
    note a user emptied); a trial that finished since gets its note and a new plot."""
    from fake_studies import add
    from optuna_dashboard import save_note

    url = f"sqlite:///{tmp_path / 'r.db'}"
    build_fake(url, kinds=("optimizers",))
    store = optuna.storages.RDBStorage(url)
    dashboard.NoteSync(store).all()  # the first dashboard
    st = optuna.load_study(study_name="optimizers", storage=store)
    emptied = st.get_trials()[0]
    save_note(fence.trial_ref(st, emptied), "")  # type: ignore[arg-type]

    writes: list[str] = []
    write = store.set_study_system_attr
    monkeypatch.setattr(
        store, "set_study_system_attr", lambda sid, key, v: (writes.append(key), write(sid, key, v))
    )
    dashboard.NoteSync(store).all()  # restarted
    assert writes == []
    assert get_note(fence.trial_ref(st, emptied)) == ""  # type: ignore[arg-type]

    add(st, emptied.params, emptied.distributions, 0.9, [256, 128], 0, "again")
    dashboard.NoteSync(store).all()  # restarted after a trial finished
    new = st.get_trials()[-1]
    assert "per-epoch curves" in get_note(fence.trial_ref(st, new))  # type: ignore[arg-type]
    assert any(key.startswith(f"dashboard:{fence.trial_id(new)}:note") for key in writes)
    assert dashboard.CURVES_DRAWN in writes
    assert fence.system_attrs(st)[dashboard.CURVES_DRAWN] == len(st.get_trials())


def _start(
    storage: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen, str]:
    """``fishopt dashboard ARGS`` in a process; returns it and the loopback URL it serves."""
    log = tmp_path / "dashboard.log"
    no_login = {config.ENV_DASHBOARD_PASSWORD: "", config.ENV_DASHBOARD_PASSWORD_FILE: ""}
    # Only the login the test gives, never one from the environment running the tests.
    env = {**os.environ, "PYTHONPATH": str(REPO), **no_login, **(env or {})}
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
            *args,
        ],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
        env=env,
        cwd=tmp_path,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        m = re.search(r"at http://(127\.0\.0\.1|0\.0\.0\.0)(:\d+/dashboard)", log.read_text())
        if m:
            return proc, f"http://127.0.0.1{m.group(2)}"  # tests only ever reach loopback
        if proc.poll() is not None:
            raise AssertionError(f"dashboard exited: {log.read_text()}")
        time.sleep(0.2)
    proc.kill()
    raise AssertionError(f"dashboard did not start: {log.read_text()}")


# Whether each button that changes studies (create, rename, delete) is visible on the page
# (offsetParent is null when it is hidden).
WRITE_BUTTONS = (
    "Array.from(document.querySelectorAll('button')).filter(b => b.textContent.trim() === "
    "'Create' || ['rename study', 'delete study'].includes(b.getAttribute('aria-label')))"
    ".map(b => b.offsetParent !== null)"
)


@pytest.mark.slow
def test_chromium_sees_the_studies_in_the_dashboard(storage: str, tmp_path: Path, browser: Browser):
    proc, address = _start(storage, tmp_path)
    try:
        browser.goto(address)
        names = ["optimizers", "widths", "depth", "full"]
        check = " && ".join(f"document.body.innerText.includes({n!r})" for n in names)
        assert browser.wait_for(check)
        shown = browser.eval(WRITE_BUTTONS)
        assert len(shown) >= 3 and all(shown)  # writable: create, rename and delete show
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
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def guarded(storage: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The compose setup: bound to every interface, password from a private file, read-only."""
    tmp = tmp_path_factory.mktemp("guarded")
    secret = tmp / "dashboard-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    proc, address = _start(
        storage,
        tmp,
        "--host",
        "0.0.0.0",
        "--allow-remote",
        "--read-only",
        env={config.ENV_DASHBOARD_PASSWORD_FILE: str(secret)},
    )
    try:
        log = (tmp / "dashboard.log").read_text()
        assert "read-only, login fishopt, password from FISHOPT_DASHBOARD_PASSWORD_FILE" in log
        assert "plain HTTP" in log and PASSWORD not in log
        yield address
    finally:
        _stop(proc)


def _curl(url: str, *args: str, login: str | None = None) -> tuple[int, str]:
    """curl's status code and headers; the login goes on stdin, never on the command line."""
    curl = executable("curl", "curl")
    config_text = f'user = "{login}"\n' if login else ""
    done = subprocess.run(
        [curl, "-sS", "-K", "-", "-D", "-", "-o", "/dev/null", *args, url],
        input=config_text,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return int(done.stdout.split()[1]), done.stdout


@pytest.mark.slow
def test_curl_gets_401_without_the_login_and_200_with_it(guarded: str, storage: str):
    status, headers = _curl(guarded)
    assert status == 401 and 'WWW-Authenticate: Basic realm="fishopt dashboard"' in headers
    assert _curl(f"{guarded.removesuffix('/dashboard')}/api/studies")[0] == 401
    assert _curl(guarded, login=f"fishopt:{PASSWORD}x")[0] == 401
    assert _curl(guarded, login=f"root:{PASSWORD}")[0] == 401
    assert _curl(guarded, login=f"fishopt:{PASSWORD}")[0] == 200
    api = guarded.removesuffix("/dashboard") + "/api/studies"
    assert _curl(api, login=f"fishopt:{PASSWORD}")[0] == 200
    # Read-only: a delete with the right login is still refused, and the study stays.
    st_id = optuna.load_study(study_name="depth", storage=storage)._study_id
    deleted = _curl(f"{api}/{st_id}", "-X", "DELETE", login=f"fishopt:{PASSWORD}")
    assert deleted[0] == 405
    assert "depth" in optuna.study.get_all_study_names(storage)


@pytest.mark.slow
def test_chromium_asks_for_the_login_and_read_only_hides_the_write_buttons(
    guarded: str, browser: Browser
):
    browser.answer_logins(None)  # the person dismisses the login prompt
    browser.goto(guarded)
    assert browser.wait_for("document.body.innerText.includes('log in')")
    assert not browser.eval("document.body.innerText.includes('widths')")
    browser.answer_logins(("fishopt", PASSWORD))  # the person types the login
    browser.goto(guarded)
    assert browser.wait_for("document.body.innerText.includes('widths')")
    # --read-only: the controls that would change a study are hidden, not just refused.
    shown = browser.eval(WRITE_BUTTONS)
    assert len(shown) >= 3 and not any(shown)
    # The page's own API calls carry the remembered login; a write is refused.
    status = browser.eval("fetch('/api/studies/1', {method: 'DELETE'}).then(r => r.status)")
    assert status == 405
