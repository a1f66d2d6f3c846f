"""`study`, `worker`, `studies`, `show`, `doctor`: running and inspecting studies.

`study` and `worker` are the same trial loop (``search.loop.run_worker``): `study` runs it in
this process with a progress display (or N of it with --jobs), `worker` runs it with plain log
lines for files and other machines.
"""

from __future__ import annotations

import math
import textwrap
import time
from typing import TYPE_CHECKING, Annotated

import optuna
import typer
from optuna.trial import FrozenTrial, TrialState
from rich.markup import escape
from rich.table import Table

from fishopt import config
from fishopt.cli.common import (
    GraceOpt,
    HeartbeatOpt,
    StorageOpt,
    _fmt,
    _log,
    _progress,
    app,
    console,
    err,
    run_options,
)
from fishopt.logline import log_lines
from fishopt.search import studies, summary
from fishopt.search.options import Options
from fishopt.search.spec import StudySpec
from fishopt.storage.connect import open_storage

if TYPE_CHECKING:  # torch comes with these: imported where a command trains
    from fishopt.search.session import Session

NameArg = Annotated[
    str,
    typer.Argument(
        metavar="NAME", help="study spec: a name in studies/, a .toml path, or a stored study"
    ),
]


@app.command("study")
@run_options
def study_cmd(
    name_or_spec: NameArg,
    opts: Options,
    jobs: Annotated[
        int,
        typer.Option(
            min=1, metavar="INT", help="worker processes sharing the study (cores divided)"
        ),
    ] = 1,
) -> None:
    """Run (or resume) a sub-study and print its summary."""
    from fishopt.bundle.artifacts import keep_best
    from fishopt.search import jobs as local_jobs
    from fishopt.search.loop import run_worker
    from fishopt.search.session import Progress

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if jobs > 1:
        code = local_jobs.run_jobs(opts, jobs, _log, keep_model=keep_best)
        _print_stored_summary(opts)
        if code:
            raise typer.Exit(code)
        return
    started = time.perf_counter()
    with _progress() as progress:
        gen = progress.add_task("generating", total=None, info="", visible=False)
        dec = progress.add_task("decoding", total=None, info="", visible=False)
        trials = progress.add_task("trials", total=None, info="", visible=False)

        def say(message: str) -> None:
            for line in log_lines(message):
                progress.console.print(escape(line), soft_wrap=True)

        def watch(task: int):
            def update(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total, visible=True)

            return update

        def on_session(s: Session) -> None:
            ds = s.ctx.dataset
            how = "from cache" if s.cache_hit else "decoded"
            say(
                f"{len(ds.y)} images, {len(ds.classes)} classes, {ds.X.shape[1]} features "
                f"({how} in {s.load_seconds:.1f}s); split {s.ctx.split.describe()['sizes']}"
            )
            if ds.skipped:
                say(f"skipped {len(ds.skipped)} unreadable files, e.g. {'; '.join(ds.skipped[:3])}")
            progress.update(
                trials,
                description=f"trials of {s.study.study_name}",
                total=s.budget,
                completed=studies.finished_count(s.study),
                visible=True,
            )

        def on_trial(s: optuna.Study, _t: FrozenTrial) -> None:
            done = s.get_trials(deepcopy=False)
            tally, best = studies.tally(done), studies.best_completed(done)
            progress.update(
                trials,
                completed=tally.finished,
                info=f"best F1 {_fmt(best.value if best else math.nan)} "
                f"pruned {tally.pruned} failed {tally.failed}",
            )

        session, outcome = run_worker(
            opts,
            say,
            Progress(say, watch(gen), watch(dec)),
            distributed=False,
            first_signal_stops=True,
            callbacks=[on_trial],
            on_session=on_session,
            keep_model=keep_best,
        )
    st = session.study
    if outcome.reason == "interrupted":
        message = (
            "interrupted: the running trial was marked FAIL and will be re-run;"
            f" run the same command to resume {st.study_name!r}"
        )
        for line in log_lines(message):
            err.print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)
        raise typer.Exit(outcome.exit_code)  # 128 + the signal: 130 for Ctrl-C, 143 for SIGTERM
    if outcome.reason == "budget" and outcome.ran == 0:
        message = (
            f"study {st.study_name!r} already has {studies.finished_count(st)} finished trials "
            f"(budget {session.budget}); pass --n-trials to extend it"
        )
        for line in log_lines(message):
            err.print(escape(line), soft_wrap=True)
    else:
        err.print(f"finished in {time.perf_counter() - started:.1f}s")
    _print_summary(session.spec, st)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


@app.command("worker")
@run_options
def worker_cmd(name_or_spec: NameArg, opts: Options) -> None:
    """Run trials of a study until its budget is spent; start as many as you like, anywhere."""
    from fishopt.bundle.artifacts import keep_best
    from fishopt.search.loop import run_worker, worker_id

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    ident = worker_id()
    _session, outcome = run_worker(opts, lambda m: _log(f"[{ident}] {m}"), keep_model=keep_best)
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


def _print_stored_summary(opts: Options) -> None:
    """The summary of the study that `--jobs` children ran, read back from storage."""
    from fishopt.search.session import recorded_spec, spec_for

    url = config.resolve_storage(opts.storage)
    storage = open_storage(url, heartbeat=False)
    name = opts.name or spec_for(opts, storage).name
    try:
        st = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        return  # the children failed before creating it; their log says why
    _print_summary(recorded_spec(st), st)


SUMMARY_ROWS = 15  # the rest are a `fishopt show` away


def summary_table(spec: StudySpec, st: optuna.Study, rows: int = SUMMARY_ROWS) -> Table:
    """The per-optimizer (or per-configuration) table; numbers stay whole at 80 columns.

    Numeric columns never wrap; the configuration label (hidden widths and only the parameters
    that differ between configurations) wraps onto further lines instead.
    """
    groups = summary.summarize(spec, st.get_trials(deepcopy=False))
    by = "optimizer" if summary.per_optimizer(spec.kind, spec.space) else "configuration"
    title = f"{st.study_name}: validation macro-F1 per {by}"
    if spec.tuned:
        phase = summary.tuned_phase(st.get_trials(deepcopy=False))
        title += ", confirm runs" if phase == "confirm" else ", search so far"
    if len(groups) > rows:
        title += f" (top {rows} of {len(groups)})"
    table = Table(title=title)
    table.add_column(by, overflow="fold", ratio=1)
    # A search (each configuration run once) has no mean, spread or best to tell apart: its
    # table gives the label the room, so a row of the full study stays on one or two lines.
    repeated = any(r.complete > 1 for r in groups)
    if repeated:
        columns = ("done", "prun/fail", "mean F1", "sd", "best F1", "test F1")
    else:
        columns = ("prun/fail", "valid F1", "test F1")
    for col in columns:
        table.add_column(col, justify="right", no_wrap=True)
    for r in groups[:rows]:
        done = f"{r.pruned}/{r.failed}"
        if repeated:
            # A spread needs two runs: one run shows "-", not a misleading 0.000.
            sd = _fmt(r.std) if r.complete > 1 else "-"
            cells = [str(r.complete), done, _fmt(r.mean), sd, _fmt(r.best), _fmt(r.test_f1)]
        else:
            cells = [done, _fmt(r.best), _fmt(r.test_f1)]
        table.add_row(r.label, *cells)
    if len(groups) > rows:
        table.caption = f"{len(groups) - rows} more; see `fishopt show {st.study_name}`"
    return table


def _print_summary(spec: StudySpec, st: optuna.Study) -> None:
    from fishopt.report.answers import answer
    from fishopt.report.load import study_data

    console.print(summary_table(spec, st))
    # The study's answer, by the report's own procedures, wrapped for a log file.
    console.print(textwrap.fill(answer(study_data(st)), 80), soft_wrap=True, markup=False)
    from fishopt.bundle import artifacts

    missing = artifacts.best_not_kept(st.get_trials(deepcopy=False))
    if missing is not None:
        best, why = missing
        err.print(
            f"[yellow]warning: best trial {best.number}: weights not kept ({escape(why)}); "
            "export-best --retrain trains its params again[/yellow]",
            soft_wrap=True,
        )
    if spec.tuned:
        gains = tuned_gains(spec, st)
        if gains is not None:
            console.print(gains)
        for note in tuned_notes(spec, st):
            for line in log_lines(note):
                err.print(f"[yellow]{escape(line)}[/yellow]", soft_wrap=True)


def tuned_notes(spec: StudySpec, st: optuna.Study) -> list[str]:
    """Range-edge warnings for each optimizer's best search setting, and where to read on."""
    from fishopt.search import tuned

    trials = st.get_trials(deepcopy=False)
    lines = []
    for name, space in spec.tuned["spaces"].items():
        best = tuned.best_search(trials, name)
        if best is not None:
            lines += [
                f"warning: {name}'s best {w}; widen the range"
                for w in tuned.edge_warnings(best.params, space)
            ]
    if tuned.holds_out(spec.tuned):
        lines.append(
            f"the whole comparison, with tests and figures: fishopt report {st.study_name}"
        )
    else:
        lines.append(
            f"defaults against tuned: fishopt report optimizers {st.study_name}"
            " (run the optimizers study on the same data first)"
        )
    return lines


def tuned_gains(spec: StudySpec, st: optuna.Study) -> Table | None:
    """Per optimizer: defaults and tuned mean, what tuning bought on the same seeds, and the
    selection's optimism (best search score minus confirm mean); None before any pairs."""
    from fishopt.report.tuned import analyse_tuned

    a = analyse_tuned(st.get_trials(deepcopy=False), spec.to_dict())
    rows = [r for r in a.rows if r.gains]
    if not rows:
        return None
    table = Table(title=f"{st.study_name}: what tuning bought, paired by seed")
    table.add_column("optimizer", overflow="fold", ratio=1)
    for col in ("defaults", "tuned", "gain", "95% interval", "seeds", "optimism"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        iv = r.gain_ci
        table.add_row(
            r.optimizer,
            _fmt(r.defaults.mean if r.defaults else math.nan),
            _fmt(r.tuned.mean),
            f"{r.gain:+.3f}",
            "-" if iv is None or math.isnan(iv.low) else f"{iv.low:+.3f}..{iv.high:+.3f}",
            str(len(r.gains)),
            "-" if math.isnan(r.optimism) else f"{r.optimism:+.3f}",
        )
    return table


@app.command("studies")
def studies_cmd(storage: StorageOpt = None) -> None:
    """List the studies in a storage with trial counts and best values."""
    url = config.resolve_storage(storage)
    store = open_storage(url, heartbeat=False)
    names = studies.names(store)
    table = Table(title=f"studies in {url.masked}")
    for col in ("study", "trials", "complete", "pruned", "failed", "running", "best F1"):
        table.add_column(col, justify="left" if col == "study" else "right")
    for name in names:
        trials = optuna.load_study(study_name=name, storage=store).get_trials(deepcopy=False)
        tally, best = studies.tally(trials), studies.best_completed(trials)
        table.add_row(
            name,
            str(tally.total),
            str(tally.complete),
            str(tally.pruned),
            str(tally.failed),
            str(tally.running),
            _fmt(best.value) if best is not None else "-",
        )
    console.print(table if names else f"no studies in {url.masked}")


@app.command("show")
def show_cmd(
    name: Annotated[str, typer.Argument(metavar="STUDY", help="study name in the storage")],
    storage: StorageOpt = None,
    top: Annotated[int, typer.Option(min=1, metavar="INT", help="trials to show")] = 10,
) -> None:
    """Show a study's top trials."""
    url = config.resolve_storage(storage)
    st = studies.load(name, open_storage(url, heartbeat=False), url)
    done = sorted(
        (t for t in st.trials if t.state == TrialState.COMPLETE), key=lambda t: -(t.value or 0)
    )
    table = Table(title=f"{name}: top {min(top, len(done))} of {len(st.trials)} trials")
    for col in ("#", "valid F1", "test F1", "epochs", "hidden", "params"):
        table.add_column(col)
    for t in done[:top]:
        params = ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t.params.items()
        )
        table.add_row(
            str(t.number),
            _fmt(t.value),
            _fmt(t.user_attrs.get("test_f1", math.nan)),
            str(t.user_attrs.get("epochs_run", "")),
            "-".join(map(str, t.user_attrs.get("hidden", []))) or "none",
            params,
        )
    console.print(table)


@app.command("doctor")
def doctor_cmd(
    name: Annotated[
        str | None, typer.Argument(metavar="STUDY", help="a study; default: every study")
    ] = None,
    storage: StorageOpt = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="mark stale RUNNING trials FAIL (and retry)")
    ] = False,
    heartbeat_interval: HeartbeatOpt = None,
    grace_period: GraceOpt = None,
) -> None:
    """Check a storage for stale RUNNING trials, duplicate trial numbers and heartbeat settings."""
    from fishopt.search import doctor

    url = config.resolve_storage(storage)
    hb = config.resolve_heartbeat(heartbeat_interval, grace_period)
    report = doctor.examine(url, hb, name, fix=fix)
    for line in report.lines:
        console.print(config.redact(line, config.secrets(url)), soft_wrap=True, markup=False)
    if report.problems:
        raise typer.Exit(1)
