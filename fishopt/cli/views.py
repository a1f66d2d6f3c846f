"""`dashboard` and `report`: watching studies live and reading them afterwards."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Annotated

import typer

from fishopt import config
from fishopt.cli.common import StorageOpt, app, console, err


@app.command("dashboard")
def dashboard_cmd(
    storage: StorageOpt = None,
    host: Annotated[
        str,
        typer.Option(metavar="HOST", help="address to bind; loopback unless --allow-remote"),
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option(min=0, max=65535, metavar="PORT", help="0 picks a free port")
    ] = 8080,
    allow_remote: Annotated[
        bool,
        typer.Option(
            "--allow-remote", help="allow a non-loopback --host (needs a password, see above)"
        ),
    ] = False,
    read_only: Annotated[
        bool,
        typer.Option(
            "--read-only", help="refuse every change (deleting, renaming, notes, uploads)"
        ),
    ] = False,
    artifacts_dir: Annotated[
        Path | None,
        typer.Option(
            metavar="PATH",
            help=f"artifact store (env {config.ENV_ARTIFACTS}; default beside the db)",
        ),
    ] = None,
) -> None:
    """Serve optuna-dashboard on fishopt's storage and artifact store.

    A password (env FISHOPT_DASHBOARD_PASSWORD or FISHOPT_DASHBOARD_PASSWORD_FILE; user
    FISHOPT_DASHBOARD_USER, default fishopt) is required beyond loopback, and asked on any host
    once set.
    """
    from fishopt import dashboard

    settings = config.resolve(storage=storage, artifacts_dir=artifacts_dir)
    login = config.resolve_dashboard_login()
    warning = dashboard.check_host(host, allow_remote, login)
    if warning:
        err.print(f"[yellow]{warning}[/yellow]")
    dash = dashboard.create(
        settings.storage,
        settings.artifacts_dir,
        host,
        port,
        on_sync_error=lambda msg: err.print(f"[yellow]could not write notes: {msg}[/yellow]"),
        login=login,
        read_only=read_only,
    )
    if dash.studies == 0:
        err.print(f"[yellow]no studies in {settings.storage.masked} yet[/yellow]")
    err.print(
        f"optuna-dashboard for {settings.storage.masked} (artifacts "
        f"{settings.artifacts_dir}) at {dash.address} ; Ctrl-C stops it",
        soft_wrap=True,
    )
    access = "read-only" if read_only else "read-write"
    who = f"login {login.user}, password from {login.source}" if login else "no login"
    err.print(f"{access}, {who}", soft_wrap=True, markup=False)
    try:
        dash.serve_forever()
    except KeyboardInterrupt:
        err.print("dashboard stopped")


@app.command("report")
def report_cmd(
    studies: Annotated[
        list[str], typer.Argument(metavar="STUDY", help="study names in the storage")
    ],
    storage: StorageOpt = None,
    out: Annotated[
        Path, typer.Option(metavar="PATH", help="folder for the HTML pages and summary.md")
    ] = Path("fishopt-report"),
) -> None:
    """Write a self-contained HTML report and a Markdown summary of one or more studies."""
    from fishopt import report

    written = report.build(config.resolve_storage(storage), studies, out)
    for line in written.findings:
        # Long answers wrap at 80 columns, so a log file reads as well as a terminal.
        console.print(textwrap.fill(line, 80, subsequent_indent="  "), soft_wrap=True)
    console.print(
        f"wrote {written.index} (comparison), {len(written.pages)} study page(s) and "
        f"{written.summary}",
        soft_wrap=True,
    )
