"""What every command shares: the Typer apps, the consoles, options declared once.

User mistakes arrive as ``FishoptError`` and leave as one red line and exit code 2. Help shows
each option's value as a conventional metavar (``PATH``, ``URL``, ``INT``) or nothing for flags:
options say what they take in their declaration here, and ``_PlainHelp`` gives the rest the
plain Click names instead of Typer's ``<int range>``/``<bool>`` labels.
"""

from __future__ import annotations

import functools
import inspect
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Column
from typer.core import TyperCommand, TyperGroup

from fishopt import config, data
from fishopt.logline import log_lines

# Typer >= 0.2x labels every value with its Python type (`<str>`, `<int range>`, `<bool>`, even
# on --help); Click and older Typer print conventional metavars. These are what a user expects.
_METAVARS = {"int": "INT", "float": "FLOAT", "str": "TEXT", "path": "PATH", "bool": ""}
# A parameter and context of Click, or of the copy of Click that newer Typer versions vendor.
Param = Any
Context = Any


def _plain_param(param: Param, ctx: Context) -> None:
    """Give ``param`` a conventional metavar unless its declaration chose one."""
    display_type = getattr(param, "display_type", None)
    if display_type is None:  # an older Typer: Click's own metavars (INTEGER, PATH) already
        return
    if param.param_type_name == "argument":
        if param.metavar is None:
            param.metavar = (param.name or "").upper()
        # The name column already shows the metavar; a type beside it only repeats it.
        param.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        return
    if param.metavar is None:
        if getattr(param, "is_flag", False):
            param.metavar = ""
        else:
            label = display_type(ctx).strip("<>").removesuffix(" range")
            param.metavar = _METAVARS.get(label, label.upper())


class _PlainHelp:
    """Mixin for Typer's command and group classes: every parameter, --help included, shows a
    conventional metavar. Applied where Click collects the parameters, so help, usage lines and
    error messages all see the same names."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Typer keeps the source's line breaks after a docstring's first paragraph, so a
        # paragraph wrapped at 100 columns in the code came out ragged at 80; rewrap them all.
        if self.help:  # type: ignore[has-type]
            paragraphs = inspect.cleandoc(self.help).split("\n\n")  # type: ignore[has-type]
            self.help = "\n\n".join(
                p if p.startswith("\b") else " ".join(p.split()) for p in paragraphs
            )

    def get_params(self, ctx: Context) -> list[Param]:
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            _plain_param(param, ctx)
        return params


class PlainCommand(_PlainHelp, TyperCommand):
    """A fishopt command: Typer's, with conventional metavars in its help."""


class PlainGroup(_PlainHelp, TyperGroup):
    """A fishopt command group: Typer's, with conventional metavars in its help."""


class _Typer(typer.Typer):
    """A Typer app whose commands are ``PlainCommand`` unless they ask for another class."""

    def command(self, *args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Any]:
        kwargs.setdefault("cls", PlainCommand)
        return super().command(*args, **kwargs)


app = _Typer(
    cls=PlainGroup,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Optuna studies of how optimizer, width and depth shape an MLP.",
)
data_app = _Typer(cls=PlainGroup, no_args_is_help=True, help="Data sets: fetch, generate, inspect.")
app.add_typer(data_app, name="data")
console = Console(highlight=False)
err = Console(stderr=True, highlight=False)

StorageOpt = Annotated[
    str | None,
    typer.Option(
        "--storage",
        metavar="URL",
        help=f"Optuna storage URL (env {config.ENV_STORAGE}; default {config.DEFAULT_STORAGE})",
        show_default=False,
    ),
]
DataOpt = Annotated[
    str | None,
    typer.Option(
        "--data",
        metavar="SOURCE",
        help="Kaggle fish folder, class-per-folder image tree, 'synthetic:N:WxH:SEED'"
        f" (parts optional) or 'digits' (env {config.ENV_DATA}; default: synthetic)",
        show_default=False,
    ),
]
CacheOpt = Annotated[
    Path | None,
    typer.Option(
        "--cache-dir",
        metavar="PATH",
        help=f"preprocessed-array cache (env {config.ENV_CACHE}; default ~/.cache/fishopt)",
        show_default=False,
    ),
]


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}", table_column=Column(no_wrap=True, max_width=26)),
        BarColumn(bar_width=10),
        # Counts stay whole when a log file's 80 columns squeeze the row ("2700/2700").
        MofNCompleteColumn(table_column=Column(no_wrap=True, min_width=11)),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(table_column=Column(no_wrap=True, min_width=7)),
        console=err,
        transient=False,
    )


def _callback(progress: Progress, task: int) -> data.Progress:
    return lambda done, total: progress.update(task, completed=done, total=total)


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


def _log(message: str) -> None:
    """Plain lines on stderr, passwords masked (workers' logs end up in files and CI)."""
    for line in log_lines(message):
        print(line, file=sys.stderr, flush=True)


# Options shared by `study` and `worker`: one definition, so the two commands cannot drift.
EpochsOpt = Annotated[
    int | None, typer.Option(min=1, metavar="INT", help="epochs per trial (default: the spec's)")
]
SeedOpt = Annotated[
    int | None, typer.Option(min=0, metavar="INT", help="study seed (default: the spec's)")
]
NameOpt = Annotated[
    str | None,
    typer.Option("--name", metavar="NAME", help="name in storage (default: the spec's name)"),
]
ImageSizeOpt = Annotated[
    str | None,
    typer.Option(metavar="WxH", help="resize images to WIDTHxHEIGHT (default: the spec's, 59x45)"),
]
DeviceOpt = Annotated[str, typer.Option(metavar="DEVICE", help="auto, cpu or cuda")]
ThreadsOpt = Annotated[int | None, typer.Option(min=1, metavar="INT", help="torch threads")]
# One flag, no --no-strict twin: off is the default, and a second column of negative names
# would take a sixth of an 80-column help screen.
StrictOpt = Annotated[bool, typer.Option("--strict", help="refuse unreadable image files")]


ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        "--artifacts-dir",
        metavar="PATH",
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
        metavar="SECONDS",
        help=f"seconds between heartbeats (env {config.ENV_HEARTBEAT_INTERVAL}; "
        f"default {config.DEFAULT_HEARTBEAT_INTERVAL})",
        show_default=False,
    ),
]
GraceOpt = Annotated[
    int | None,
    typer.Option(
        "--grace-period",
        min=1,
        metavar="SECONDS",
        help=f"seconds without a heartbeat before a trial is failed and retried "
        f"(env {config.ENV_GRACE_PERIOD}; default {config.DEFAULT_GRACE_PERIOD})",
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
            int | None,
            typer.Option(min=1, metavar="INT", help="total trial budget (recorded in the study)"),
        ],
        None,
    ),
    (
        "timeout",
        Annotated[
            float | None, typer.Option(min=1, metavar="SECONDS", help="seconds for this run")
        ],
        None,
    ),
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
                metavar="INT",
                help=f"re-runs of a dead worker's trial (env {config.ENV_MAX_RETRY}; "
                f"default {config.DEFAULT_MAX_RETRY})",
                show_default=False,
            ),
        ],
        None,
    ),
]


def run_options(command: Callable[..., None]) -> Callable[..., None]:
    """Give ``command(name, opts, **own)`` every run option; it receives them as ``opts``."""
    from fishopt.search.options import Options

    # eval_str: the wrapper's __signature__ is used as is, so its annotations must be objects
    # (the command's own Annotated metavar and help), not the strings of postponed annotations.
    own = [
        p for p in inspect.signature(command, eval_str=True).parameters.values() if p.name != "opts"
    ]
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
