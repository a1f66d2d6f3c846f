"""``fishopt dashboard``: optuna-dashboard on fishopt's storage and artifact store.

The dashboard has no login and can delete studies, so it binds to loopback unless the caller
explicitly allows another address. While it runs, a background thread keeps each study's notes
current: the study note (what it asks, data, split, spec) for studies made before notes
existed, a note per finished trial with its per-epoch curves, and a study-level plot of every
trial's train/valid accuracy per epoch.
"""

from __future__ import annotations

import ipaddress
import logging
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import optuna
from optuna.trial import FrozenTrial, TrialState

from fishopt import notes
from fishopt.config import mask_url
from fishopt.errors import FishoptError
from fishopt.search.storage import open_storage

log = logging.getLogger(__name__)
CURVES_ID = "fishopt-curves"  # graph object id: rewritten in place as trials finish
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool) -> str | None:
    """Refuse a non-loopback bind unless allowed; when allowed, return the warning to print."""
    if is_loopback(host):
        return None
    if not allow_remote:
        raise FishoptError(
            f"--host {host} would expose the dashboard beyond this machine; it has no login and "
            "can delete studies. Pass --allow-remote as well if you mean it (or tunnel: "
            "ssh -L 8080:127.0.0.1:8080 ...)"
        )
    return (
        f"warning: the dashboard listens on {host}: anyone who can reach this port can read, "
        "edit and delete every study in this storage (there is no login)"
    )


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
    noted: set[int] = field(default_factory=set)  # trial ids whose note is known written
    plotted: dict[int, int] = field(default_factory=dict)  # study id -> trials in the plot

    def study(self, st: optuna.Study) -> None:
        from optuna_dashboard import get_note, save_plotly_graph_object

        if notes.ATTR in st.user_attrs and not get_note(st):
            notes.save_study_note(st)
        done = [
            t
            for t in st.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
            if t.user_attrs.get("history")
        ]
        for t in done:
            if t._trial_id in self.noted:
                continue
            if not get_note(notes._TrialRef(self.storage, st, t._trial_id)):  # type: ignore[arg-type]
                notes.save_trial_note(st, t)
            self.noted.add(t._trial_id)
        if done and self.plotted.get(st._study_id) != len(done):
            save_plotly_graph_object(st, curves_figure(done), graph_object_id=CURVES_ID)
            self.plotted[st._study_id] = len(done)

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
    url: str
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
    url: str,
    artifacts_dir: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    sync_interval: float = 20.0,
    on_sync_error: Callable[[str], None] | None = None,
) -> Dashboard:
    """Open storage and artifact store, write missing notes, bind the server (not serving yet)."""
    from optuna.artifacts import FileSystemArtifactStore
    from optuna_dashboard import wsgi

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
    app = wsgi(storage, artifact_store=FileSystemArtifactStore(str(artifacts_dir)))
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
