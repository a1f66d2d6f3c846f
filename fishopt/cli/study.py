"""`study`, `worker`, `studies`, `show`, `doctor`: running and inspecting studies."""

from __future__ import annotations

import math
import time
from typing import Annotated

import optuna
import typer
from optuna.trial import TrialState
from rich.table import Table

from fishopt import config, data
from fishopt.bundle import artifacts
from fishopt.cli.common import (
    CacheOpt,
    DataOpt,
    DeviceOpt,
    EpochsOpt,
    GraceOpt,
    HeartbeatOpt,
    ImageSizeOpt,
    NameOpt,
    SeedOpt,
    StorageOpt,
    StrictOpt,
    ThreadsOpt,
    _fmt,
    _log,
    _progress,
    app,
    console,
    err,
)
from fishopt.errors import FishoptError
from fishopt.search import objective as study
from fishopt.search import session as runner
from fishopt.search import spec as specs
from fishopt.search.storage import open_storage


@app.command("study")
def study_cmd(
    name: Annotated[str, typer.Argument(help="study spec: a name in studies/ or a .toml path")],
    data_arg: DataOpt = None,
    storage: StorageOpt = None,
    n_trials: Annotated[int | None, typer.Option(min=1, help="total trial budget")] = None,
    timeout: Annotated[float | None, typer.Option(min=1, help="seconds for this run")] = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
    study_name: NameOpt = None,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    strict: StrictOpt = False,
    cache_dir: CacheOpt = None,
    jobs: Annotated[
        int, typer.Option(min=1, help="worker processes sharing the study (cores divided)")
    ] = 1,
) -> None:
    """Run (or resume) a sub-study and print its summary."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    settings = config.resolve(storage=storage, data=None, cache_dir=cache_dir)
    spec = specs.load(name).with_overrides(
        epochs=epochs, seed=seed, image_size=data.parse_size(image_size) if image_size else None
    )
    runner.set_threads(threads)
    dev = runner.resolve_device(device)
    source, how = data.choose_source(data_arg, settings.data)
    err.print(how)
    with _progress() as progress:
        gen = progress.add_task("generating", total=None, info="", visible=False)
        dec = progress.add_task("decoding", total=None, info="", visible=False)

        def on_gen(done: int, total: int) -> None:
            progress.update(gen, completed=done, total=total, visible=True)

        def on_dec(done: int, total: int) -> None:
            progress.update(dec, completed=done, total=total, visible=True)

        loaded = runner.build_context(
            spec,
            source,
            settings,
            device=dev,
            strict=strict,
            progress=on_dec,
            generate_progress=on_gen,
        )
    ds = loaded.ctx.dataset
    how_loaded = "from cache" if loaded.cache_hit else "decoded"
    err.print(
        f"{len(ds.y)} images, {len(ds.classes)} classes, {ds.X.shape[1]} features "
        f"({how_loaded} in {loaded.seconds:.1f}s); split {loaded.ctx.split.describe()['sizes']}"
    )
    if ds.skipped:
        err.print(
            f"[yellow]skipped {len(ds.skipped)} unreadable files, e.g. "
            f"{'; '.join(ds.skipped[:3])}[/yellow]"
        )
    st_name = study_name or spec.name
    st = runner.open_and_prepare(loaded.ctx, settings.storage, st_name)
    total = runner.budget(spec, n_trials)
    if total is not None and study.finished_count(st) >= total:
        err.print(
            f"study {st_name!r} already has {study.finished_count(st)} finished trials "
            f"(budget {total}); pass --n-trials to extend it"
        )
    elif jobs > 1:
        from fishopt.search import loop as worker

        opts = worker.WorkerOptions(
            study=name,
            data=data_arg,
            n_trials=n_trials,
            timeout=timeout,
            epochs=epochs,
            seed=seed,
            name=st_name,
            image_size=image_size,
            device=dev,
            threads=threads,
            strict=strict,
            cache_dir=settings.cache_dir,
        )
        code = worker.run_jobs(opts, jobs, settings.storage, _log)
        if code:
            _print_summary(spec, st)
            raise typer.Exit(code)
    else:
        _run_with_progress(
            loaded.ctx,
            st,
            total,
            timeout or spec.timeout,
            on_trained=artifacts.keep_best(settings.artifacts_dir),
        )
    _print_summary(spec, st)


def _run_with_progress(
    ctx: study.Context,
    st: optuna.Study,
    total: int | None,
    timeout: float | None,
    on_trained: study.TrainedHook | None = None,
) -> None:
    started = time.perf_counter()
    with _progress() as progress:
        task = progress.add_task(
            f"trials of {st.study_name}", total=total, completed=study.finished_count(st), info=""
        )

        def on_trial(s: optuna.Study, _t: optuna.trial.FrozenTrial) -> None:
            trials = s.get_trials(deepcopy=False)
            pruned = sum(t.state == TrialState.PRUNED for t in trials)
            failed = sum(t.state == TrialState.FAIL for t in trials)
            done = [t.value for t in trials if t.state == TrialState.COMPLETE and t.value]
            best = f"best F1 {max(done):.3f}" if done else "best F1 -"
            progress.update(
                task,
                completed=study.finished_count(s),
                info=f"{best}  pruned {pruned}  failed {failed}",
            )

        try:
            runner.run(ctx, st, total, timeout, callbacks=[on_trial], on_trained=on_trained)
        except KeyboardInterrupt:
            progress.stop()
            err.print(
                f"[yellow]interrupted: the running trial was marked FAIL and will be re-run;"
                f" run the same command to resume {st.study_name!r}[/yellow]"
            )
            raise typer.Exit(130) from None
    err.print(f"finished in {time.perf_counter() - started:.1f}s")


def _print_summary(spec: specs.StudySpec, st: optuna.Study) -> None:
    rows = study.summarize(spec, st.get_trials(deepcopy=False))
    by = "optimizer" if spec.kind == "optimizers" else "configuration"
    table = Table(title=f"{st.study_name}: validation macro-F1 per {by}")
    # Short headers: the table must fit an 80-column terminal without cutting the names.
    for col in (by, "done", "pruned", "failed", "mean F1", "sd", "best F1", "test F1"):
        table.add_column(col, justify="left" if col == by else "right", no_wrap=col == by)
    for r in rows[:25]:
        table.add_row(
            r.label,
            str(r.complete),
            str(r.pruned),
            str(r.failed),
            _fmt(r.mean),
            _fmt(r.std),
            _fmt(r.best),
            _fmt(r.test_f1),
        )
    console.print(table)
    if len(rows) > 25:
        console.print(
            f"... {len(rows) - 25} more configurations; see `fishopt show {st.study_name}`"
        )


@app.command("studies")
def studies_cmd(storage: StorageOpt = None) -> None:
    """List the studies in a storage with trial counts and best values."""
    url = config.resolve_storage(storage)
    summaries = optuna.study.get_all_study_summaries(
        open_storage(url, heartbeat=False), include_best_trial=True
    )
    table = Table(title=f"studies in {config.mask_url(url)}")
    for col in ("study", "trials", "complete", "pruned", "failed", "running", "best F1"):
        table.add_column(col, justify="left" if col == "study" else "right")
    store = open_storage(url, heartbeat=False)
    for s in summaries:
        trials = store.get_all_trials(s._study_id, deepcopy=False)
        count = {state: sum(t.state == state for t in trials) for state in TrialState}
        best = s.best_trial.value if s.best_trial else None
        table.add_row(
            s.study_name,
            str(len(trials)),
            str(count[TrialState.COMPLETE]),
            str(count[TrialState.PRUNED]),
            str(count[TrialState.FAIL]),
            str(count[TrialState.RUNNING]),
            _fmt(best) if best is not None else "-",
        )
    console.print(table if summaries else f"no studies in {config.mask_url(url)}")


@app.command("show")
def show_cmd(
    name: str, storage: StorageOpt = None, top: Annotated[int, typer.Option(min=1)] = 10
) -> None:
    """Show a study's top trials."""
    url = config.resolve_storage(storage)
    try:
        st = optuna.load_study(study_name=name, storage=open_storage(url, heartbeat=False))
    except KeyError:
        names = optuna.study.get_all_study_names(open_storage(url, heartbeat=False))
        raise FishoptError(
            f"no study {name!r} in {config.mask_url(url)}; studies there: "
            f"{', '.join(names) or 'none'}"
        ) from None
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


@app.command("worker")
def worker_cmd(
    name: Annotated[
        str, typer.Argument(help="study spec (name or .toml), or a study already in storage")
    ],
    data_arg: DataOpt = None,
    storage: StorageOpt = None,
    n_trials: Annotated[
        int | None, typer.Option(min=1, help="global trial budget (recorded in the study)")
    ] = None,
    timeout: Annotated[float | None, typer.Option(min=1, help="seconds for this worker")] = None,
    epochs: EpochsOpt = None,
    seed: SeedOpt = None,
    study_name: NameOpt = None,
    image_size: ImageSizeOpt = None,
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    strict: StrictOpt = False,
    cache_dir: CacheOpt = None,
    heartbeat_interval: HeartbeatOpt = None,
    grace_period: GraceOpt = None,
    max_retry: Annotated[
        int | None,
        typer.Option(
            min=0,
            help=f"re-runs of a dead worker's trial [env {config.ENV_MAX_RETRY}; "
            f"default {config.DEFAULT_MAX_RETRY}]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Run trials of a study until its budget is spent; start as many as you like, anywhere."""
    from fishopt.search import loop as worker

    opts = worker.WorkerOptions(
        study=name,
        data=data_arg,
        storage=storage,
        n_trials=n_trials,
        timeout=timeout,
        epochs=epochs,
        seed=seed,
        name=study_name,
        image_size=image_size,
        device=device,
        threads=threads,
        strict=strict,
        cache_dir=cache_dir,
        heartbeat_interval=heartbeat_interval,
        grace_period=grace_period,
        max_retry=max_retry,
    )
    ident = worker.worker_id()
    outcome = worker.run_worker(opts, lambda m: _log(f"[{ident}] {m}"))
    if outcome.exit_code:
        raise typer.Exit(outcome.exit_code)


@app.command("doctor")
def doctor_cmd(
    name: Annotated[str | None, typer.Argument(help="a study; default: every study")] = None,
    storage: StorageOpt = None,
    fix: Annotated[bool, typer.Option(help="mark stale RUNNING trials FAIL (and retry)")] = False,
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
