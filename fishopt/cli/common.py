"""What every command shares: the Typer apps, the consoles, options declared once.

User mistakes arrive as ``FishoptError`` and leave as one red line and exit code 2.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from fishopt import config, data

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Optuna studies of how optimizer, width and depth shape an MLP.",
)
data_app = typer.Typer(no_args_is_help=True, help="Data sets: fetch, generate, inspect.")
app.add_typer(data_app, name="data")
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        help=f"Optuna storage URL (env {config.ENV_STORAGE}; default {config.DEFAULT_STORAGE})",
        show_default=False,
    ),
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        help="Kaggle fish folder, class-per-folder image tree, 'synthetic:N:WxH:SEED'"
        f" (parts optional) or 'digits' (env {config.ENV_DATA}; default: synthetic)",
        show_default=False,
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        help=f"preprocessed-array cache (env {config.ENV_CACHE}; default ~/.cache/fishopt)",
        show_default=False,
    ),
]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


def _callback(progress: Progress, task: int) -> data.Progress:
    return lambda done, total: progress.update(task, completed=done, total=total)


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _log(message: str) -> None:
    """One plain line on stderr, passwords masked (workers' logs end up in files and CI)."""
    print(config.redact(message, config.secrets()), file=sys.stderr, flush=True)


# Options shared by `study` and `worker`: one definition, so the two commands cannot drift.
EpochsOpt = Annotated[int | None, typer.Option(min=1)]
SeedOpt = Annotated[int | None, typer.Option(min=0)]
NameOpt = Annotated[
    str | None, typer.Option("--name", help="name in storage (default: the spec's name)")
]
ImageSizeOpt = Annotated[str | None, typer.Option(help="WIDTHxHEIGHT, e.g. 59x45")]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu or cuda")]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, help="torch threads")]
StrictOpt = Annotated[bool, typer.Option(help="refuse unreadable image files")]


ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        "--artifacts-dir",
        help=f"where studies keep best-trial weights (env {config.ENV_ARTIFACTS}; "
        "default: beside the SQLite file, else ./fishopt-artifacts)",
        show_default=False,
    ),
]


HeartbeatOpt = Annotated[
    int | None,
    typer.Option(
        "--heartbeat-interval",
        min=1,
        help=f"seconds between heartbeats [env {config.ENV_HEARTBEAT_INTERVAL}; "
        f"default {config.DEFAULT_HEARTBEAT_INTERVAL}]",
        show_default=False,
    ),
]
GraceOpt = Annotated[
    int | None,
    typer.Option(
        "--grace-period",
        min=1,
        help=f"seconds without a heartbeat before a trial is failed and retried "
        f"[env {config.ENV_GRACE_PERIOD}; default {config.DEFAULT_GRACE_PERIOD}]",
        show_default=False,
    ),
]


# The options of every command that runs trials (`study`, `worker`), declared once as data:
# (parameter name, annotated type, default). `run_options` adds them to a command and hands the
# command one `session.Options`.
RUN_OPTIONS: list[tuple[str, object, object]] = [
    ("data", DataOpt, None),
    ("storage", StorageOpt, None),
    (
        "n_trials",
        Annotated[
            int | None, typer.Option(min=1, help="total trial budget (recorded in the study)")
        ],
        None,
    ),
    ("timeout", Annotated[float | None, typer.Option(min=1, help="seconds for this run")], None),
    ("epochs", EpochsOpt, None),
    ("seed", SeedOpt, None),
    ("name", NameOpt, None),
    ("image_size", ImageSizeOpt, None),
    ("device", DeviceOpt, "auto"),
    ("threads", ThreadsOpt, None),
    ("strict", StrictOpt, False),
    ("cache_dir", CacheOpt, None),
    ("artifacts_dir", ArtifactsOpt, None),
    ("heartbeat_interval", HeartbeatOpt, None),
    ("grace_period", GraceOpt, None),
    (
        "max_retry",
        Annotated[
            int | None,
            typer.Option(
                min=0,
                help=f"re-runs of a dead worker's trial [env {config.ENV_MAX_RETRY}; "
                f"default {config.DEFAULT_MAX_RETRY}]",
                show_default=False,
            ),
        ],
        None,
    ),
]


def run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command(name, opts, **own)`` every run option; it receives them as ``opts``."""
    from fishopt.search.session import Options

    own = [p for p in inspect.signature(command).parameters.values() if p.name != "opts"]
    added = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=kind)
        for name, kind, default in RUN_OPTIONS
    ]
    names = {name for name, _kind, _default in RUN_OPTIONS}

    @functools.wraps(command)
    def wrapper(**kwargs: object) -> None:
        name = kwargs.pop("name_or_spec")
        given = {k: kwargs.pop(k) for k in list(kwargs) if k in names}
        command(name_or_spec=name, opts=Options(study=str(name), **given), **kwargs)  # type: ignore[arg-type]

    wrapper.__signature__ = inspect.Signature([*own, *added])  # type: ignore[attr-defined]
    return wrapper
