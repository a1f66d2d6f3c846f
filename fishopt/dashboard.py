"""``fishopt dashboard``: optuna-dashboard on fishopt's storage and artifact store.

optuna-dashboard has no login and can delete studies, so it binds to loopback unless the caller
explicitly allows another address, and then only behind HTTP basic auth (``Guard``, a WSGI
wrapper around optuna-dashboard's app). optuna-dashboard has no read-only mode either; the same
wrapper provides one by refusing every request that is not a GET or HEAD. While it runs, a
background thread keeps each study's notes current: the study note (what it asks, data, split,
spec) for studies made before notes existed, a note per finished trial with its per-epoch
curves, and a study-level plot of every trial's train/valid accuracy per epoch.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import logging
import socketserver
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
from optuna.trial import FrozenTrial, TrialState

from fishopt import notes
from fishopt.config import (
    ENV_DASHBOARD_PASSWORD,
    ENV_DASHBOARD_PASSWORD_FILE,
    DashboardLogin,
    StorageURL,
    mask_url,
)
from fishopt.errors import FishoptError
from fishopt.search import studies
from fishopt.storage import fence
from fishopt.storage.connect import open_storage

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)
CURVES_ID = "fishopt-curves"  # graph object id: rewritten in place as trials finish
CURVES_DRAWN = "fishopt:curves_trials"  # study system attribute: trials in the stored plot
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool, login: DashboardLogin | None) -> str | None:
    """Refuse a non-loopback bind unless allowed and password-protected; when allowed, return
    the warning to print."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise FishoptError(
            f"--host {host} would expose the dashboard beyond this machine, and it can delete "
            "studies. Pass --allow-remote as well if you mean it (or tunnel: "
            "ssh -L 8080:127.0.0.1:8080 ...)"
        )
    if login is None:
        raise FishoptError(
            f"--host {host} needs a login: set {ENV_DASHBOARD_PASSWORD} or "
            f"{ENV_DASHBOARD_PASSWORD_FILE} (12+ characters)"
        )
    return (
        f"warning: the dashboard listens on {host} over plain HTTP: the password crosses the "
        "network readable by anyone on the path, and whoever has it can read, edit and delete "
        "every study in this storage (use a tunnel or a TLS proxy outside trusted networks)"
    )


# ------------------------------------------------------------------------------------ guard

_READ_METHODS = frozenset({"GET", "HEAD"})

# What ``--read-only`` hides in optuna-dashboard's pages (0.21): the controls that change a study,
# by their accessible label or their exact text. The server refuses those requests anyway
# (405); hiding the controls saves a reader from buttons that can only fail.
_READ_ONLY_LABELS = ("delete study", "rename study", "delete artifact", "skip trial")
_READ_ONLY_TEXTS = (
    "Create",
    "New Study",
    "Delete study",
    "Delete artifact",
    "Delete",
    "Rename",
    "Edit",
    "Fail Trial",
    "Upload",
    "Upload a New File",
    "Upload a New Image",
    "Insert an image",
    "Save",
    "Submit",
    "Remove",
)
# Served by ``Guard``: the page's CSP allows scripts from its own origin only, so the script is
# a file of the site, not inline.
READ_ONLY_SCRIPT_PATH = "/fishopt/read-only.js"
READ_ONLY_SCRIPT = (
    "(function(){"
    f"var T=new Set({json.dumps(list(_READ_ONLY_TEXTS))});"
    "function hide(){document.querySelectorAll('button,[role=menuitem]').forEach(function(e){"
    "if(T.has((e.textContent||'').trim()))e.setAttribute('data-fishopt-read-only','');});}"
    "new MutationObserver(hide).observe(document.documentElement,"
    "{childList:true,subtree:true,characterData:true});hide();})();\n"
)
READ_ONLY_SNIPPET = (
    "<style>"
    + ",".join(f'[aria-label="{label}"]' for label in _READ_ONLY_LABELS)
    + ",[data-fishopt-read-only]{display:none!important}</style>"
    + f'<script src="{READ_ONLY_SCRIPT_PATH}"></script>'
)


def _reply(
    start_response: StartResponse, status: str, text: str, headers: list[tuple[str, str]]
) -> list[bytes]:
    body = f"{text}\n".encode()
    start_response(
        status,
        [
            ("Content-Type", "text/plain; charset=utf-8"),
            ("Content-Length", str(len(body))),
            ("Cache-Control", "no-store"),
            *headers,
        ],
    )
    return [body]


def authorized(header: str | None, login: DashboardLogin) -> bool:
    """Whether an ``Authorization`` header carries ``login``, compared in constant time."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return False
    # Both comparisons always run, so the time taken says nothing about which one failed.
    ok_user = hmac.compare_digest(user, login.user.encode())
    ok_password = hmac.compare_digest(password, login.password.encode())
    return bool(sep) and ok_user and ok_password


@dataclass(frozen=True)
class Guard:
    """WSGI wrapper: HTTP basic auth when ``login`` is set, and GET/HEAD only when
    ``read_only``. Everything optuna-dashboard serves (page, API, artifacts) passes through it,
    so neither check can be bypassed by a route optuna-dashboard adds later."""

    app: WSGIApplication
    login: DashboardLogin | None = None
    read_only: bool = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if self.login is not None and not authorized(environ.get("HTTP_AUTHORIZATION"), self.login):
            return _reply(
                start_response,
                "401 Unauthorized",
                "fishopt dashboard: log in with the user and password it was started with",
                [("WWW-Authenticate", 'Basic realm="fishopt dashboard", charset="UTF-8"')],
            )
        if self.read_only and environ.get("REQUEST_METHOD", "GET") not in _READ_METHODS:
            return _reply(
                start_response,
                "405 Method Not Allowed",
                "fishopt dashboard is read-only (started with --read-only)",
                [("Allow", "GET, HEAD")],
            )
        if self.read_only:
            if environ.get("PATH_INFO") == READ_ONLY_SCRIPT_PATH:
                body = READ_ONLY_SCRIPT.encode()
                start_response(
                    "200 OK",
                    [
                        ("Content-Type", "text/javascript; charset=utf-8"),
                        ("Content-Length", str(len(body))),
                    ],
                )
                return [body]
            return _with_snippet(self.app, environ, start_response, READ_ONLY_SNIPPET)
        return self.app(environ, start_response)


def _with_snippet(
    app: WSGIApplication, environ: WSGIEnvironment, start_response: StartResponse, snippet: str
) -> Iterable[bytes]:
    """``app``'s answer, with ``snippet`` placed before ``</head>`` of an HTML page (the page is
    a few KB; every other answer passes through untouched)."""
    seen: dict = {}

    def capture(status: str, headers: list[tuple[str, str]], exc_info=None):  # type: ignore[no-untyped-def]
        seen.update(status=status, headers=headers, exc_info=exc_info)
        return lambda _data: None

    body = app(environ, capture)
    headers = seen.get("headers", [])
    html = any(k.lower() == "content-type" and "text/html" in v for k, v in headers)
    if not html:
        start_response(seen["status"], headers, seen.get("exc_info"))
        return body
    try:
        page = b"".join(body)
    finally:
        if hasattr(body, "close"):
            body.close()
    page = page.replace(b"</head>", snippet.encode() + b"</head>", 1)
    headers = [(k, v) for k, v in headers if k.lower() != "content-length"]
    start_response(seen["status"], [*headers, ("Content-Length", str(len(page)))])
    return [page]


# -------------------------------------------------------------------------------- notes sync


def curves_figure(trials: list[FrozenTrial]):  # -> plotly Figure
    import plotly.graph_objects as go

    fig = go.Figure(layout={"template": "none"})
    for t in trials:
        h = t.user_attrs.get("history") or []
        epochs = [r["epoch"] for r in h]
        group = f"trial {t.number}"
        for metric, dash in (("valid_acc", "solid"), ("train_acc", "dot")):
            fig.add_trace(
                go.Scatter(
                    x=epochs,
                    y=[round(r[metric], 4) for r in h],
                    mode="lines",
                    line={"dash": dash},
                    name=f"#{t.number} {metric.split('_')[0]}",
                    legendgroup=group,
                )
            )
    fig.update_layout(
        title="Train (dotted) and validation (solid) accuracy per epoch, one pair per trial",
        xaxis_title="epoch",
        yaxis_title="accuracy",
    )
    return fig


@dataclass
class NoteSync:
    """Writes missing notes and the curves plot; remembers what it has done (per process)."""

    storage: optuna.storages.BaseStorage
    plotted: dict[int, int] = field(default_factory=dict)  # study id -> trials done and noted

    def study(self, st: optuna.Study) -> None:
        from optuna_dashboard import save_plotly_graph_object

        done = [
            t
            for t in st.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.user_attrs.get("history")
        ]
        sid = fence.study_id(st)
        if self.plotted.get(sid) == len(done):
            return  # nothing finished since the last pass (finished trials stay finished)
        attrs = fence.system_attrs(st)
        have = fence.noted(attrs, (fence.trial_id(t) for t in done))
        identity = st.user_attrs.get(studies.ATTR)
        if identity is not None and None not in have:
            notes.save_study_note(st, identity)
        for t in done:
            if fence.trial_id(t) not in have:
                notes.save_trial_note(st, t)
        # Drawn again only when trials finished since: a restarted dashboard finds the count it
        # drew last in the study (a plotly figure of many trials costs tens of milliseconds).
        if done and attrs.get(CURVES_DRAWN) != len(done):
            save_plotly_graph_object(st, curves_figure(done), graph_object_id=CURVES_ID)
            fence.storage_of(st).set_study_system_attr(sid, CURVES_DRAWN, len(done))
        self.plotted[sid] = len(done)

    def all(self) -> int:
        names = optuna.study.get_all_study_names(self.storage)
        for name in names:
            self.study(optuna.load_study(study_name=name, storage=self.storage))
        return len(names)


def sync_forever(sync: NoteSync, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        try:
            sync.all()
        except Exception as exc:  # a storage hiccup must not kill the dashboard
            log.warning("note sync failed: %s", mask_url(str(exc)))


# ------------------------------------------------------------------------------------ server


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass(frozen=True)
class Dashboard:
    url: StorageURL
    server: WSGIServer
    stop: threading.Event
    studies: int  # found at start; 0 often means a mistyped --storage

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/dashboard"

    def serve_forever(self) -> None:
        try:
            self.server.serve_forever()
        finally:
            self.stop.set()
            self.server.server_close()


def create(
    url: StorageURL,
    artifacts_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    sync_interval: float = 20.0,
    on_sync_error: Callable[[str], None] | None = None,
    login: DashboardLogin | None = None,
    read_only: bool = False,
) -> Dashboard:
    """Open storage and artifact store, write missing notes, bind the server (not serving yet).

    A non-loopback host without a login is refused here too, so no caller can serve the
    unguarded app beyond this machine.
    """
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi

    check_host(host, allow_remote=True, login=login)  # raises when beyond loopback, no login
    storage = open_storage(url, heartbeat=False)
    sync = NoteSync(storage)
    studies = 0
    try:
        studies = sync.all()
    except Exception as exc:
        if on_sync_error is None:
            raise
        on_sync_error(mask_url(str(exc)))
    artifacts_dir.mkdir(parents=True, exist_ok=True)
    app = Guard(
        wsgi(storage, artifact_store=FileSystemArtifactStore(str(artifacts_dir))),
        login=login,
        read_only=read_only,
    )
    try:
        server = make_server(
            host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler
        )
    except OSError as exc:
        raise FishoptError(f"cannot listen on {host}:{port}: {exc.strerror}; try --port") from None
    stop = threading.Event()
    threading.Thread(
        target=sync_forever, args=(sync, stop, sync_interval), daemon=True, name="note-sync"
    ).start()
    return Dashboard(url, server, stop, studies)
