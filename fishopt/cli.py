"""Typer commands only: parse flags, call library functions, display with rich.

User mistakes arrive as ``FishoptError`` and leave as one red line and exit code 2.
"""

from __future__ import annotations

import math
import sys
import time
import warnings
from pathlib import Path
from typing import Annotated

import optuna
import typer
from optuna.trial import TrialState
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fishopt import artifacts, config, data, runner, study
from fishopt import spec as specs
from fishopt.errors import FishoptError
from fishopt.storage import open_storage

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
        from fishopt import worker

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


def _fmt(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}"


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


@data_app.command("info")
def data_info(
    data_arg: DataOpt = None,
    cache_dir: CacheOpt = None,
    image_size: Annotated[str, typer.Option(help="WIDTHxHEIGHT")] = "59x45",
    strict: bool = False,
) -> None:
    """Load a data set (decoding and caching it) and print what was found."""
    settings = config.resolve(cache_dir=cache_dir)
    source, how = data.choose_source(data_arg, settings.data)
    err.print(how)
    t0 = time.perf_counter()
    ds, hit = data.load(source, settings.cache_dir, data.parse_size(image_size), strict=strict)
    counts = {c: int((ds.y == i).sum()) for i, c in enumerate(ds.classes)}
    console.print(
        f"{len(ds.y)} images in {len(ds.classes)} classes, {ds.X.shape[1]} features, "
        f"fingerprint {ds.fingerprint} ({'cache' if hit else 'decoded'} "
        f"{time.perf_counter() - t0:.2f}s)"
    )
    for c, n in counts.items():
        console.print(f"  {c}: {n}")
    if ds.skipped:
        console.print(f"skipped {len(ds.skipped)}: {'; '.join(ds.skipped[:3])}")


@data_app.command("synth")
def data_synth(
    out: Annotated[Path, typer.Option(help="folder to write Fish_Dataset/ into")],
    per_class: Annotated[int, typer.Option(min=3)] = data.DEFAULT_SYNTHETIC_PER_CLASS,
    size: Annotated[str, typer.Option(help="WIDTHxHEIGHT")] = "590x445",
    seed: Annotated[int, typer.Option(min=0)] = 0,
) -> None:
    """Write the synthetic fish set in the Kaggle layout (photos and GT masks)."""
    from fishopt import synthetic

    with _progress() as progress:
        task = progress.add_task("generating", total=None, info="")
        root = synthetic.generate(
            out,
            per_class=per_class,
            size=data.parse_size(size),
            seed=seed,
            progress=_callback(progress, task),
        )
    console.print(f"wrote {root}")


@data_app.command("fetch")
def data_fetch(handle: str = "crowww/a-large-scale-fish-dataset") -> None:
    """Download the Kaggle fish set with kagglehub (needs credentials and network)."""
    from fishopt.fetch import fetch_kaggle

    console.print(str(fetch_kaggle(handle)))


# ------------------------------------------------------------------ export, predict, serve

ArtifactsOpt = Annotated[
    Path | None,
    typer.Option(
        "--artifacts-dir",
        help=f"where studies keep best-trial weights (env {config.ENV_ARTIFACTS}; "
        "default: beside the SQLite file, else ./fishopt-artifacts)",
        show_default=False,
    ),
]


@app.command("export-best")
def export_best_cmd(
    name: Annotated[str, typer.Argument(help="study name in the storage")],
    out: Annotated[Path | None, typer.Option(help="bundle folder (default: ./NAME-bundle)")] = None,
    retrain: Annotated[
        bool, typer.Option(help="train the best params again on train+valid")
    ] = False,
    onnx: Annotated[bool, typer.Option(help="also write model.onnx, checked on test")] = False,
    storage: StorageOpt = None,
    artifacts_dir: ArtifactsOpt = None,
    data_arg: DataOpt = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Write the study's best model as a bundle, from the weights kept while it ran."""
    from fishopt import export

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = config.resolve(storage=storage, cache_dir=cache_dir, artifacts_dir=artifacts_dir)
    done = export.export_best(
        name, settings, out, retrain_model=retrain, onnx=onnx, data_flag=data_arg
    )
    meta, test = done.meta, done.meta["metrics"]["test"]
    console.print(
        f"wrote {done.path} (trial {meta['source']['trial']}, weights {meta['weights_origin']}, "
        f"valid F1 {_fmt(meta['metrics']['valid_f1'])}"
        + (f", test acc {_fmt(test['accuracy'])}, test F1 {_fmt(test['macro_f1'])}" if test else "")
        + (", model.onnx checked" if meta.get("onnx") else "")
        + ")"
    )
    if retrain:
        tt = meta["metrics"]["trial_test"]
        console.print(
            f"trial as found: test acc {_fmt(tt['accuracy'])}, test F1 {_fmt(tt['macro_f1'])}"
        )


@app.command("predict")
def predict_cmd(
    bundle: Annotated[Path, typer.Argument(help="bundle folder from export-best")],
    paths: Annotated[list[Path], typer.Argument(help="images or folders of images")],
    top_k: Annotated[int, typer.Option("--top-k", min=1)] = 3,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv")] = "table",
) -> None:
    """Predict the species of images with an exported bundle."""
    import csv
    import json

    from fishopt import predict

    if fmt not in ("table", "json", "csv"):
        raise FishoptError(f"--format {fmt}: expected table, json or csv")
    b = predict.load_bundle(bundle)
    results = predict.predict_files(b, predict.collect(paths), top_k)
    if fmt == "json":
        print(json.dumps([r.to_dict() for r in results], indent=1))
    elif fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(["file", "rank", "class", "probability", "error"])
        for r in results:
            if r.error:
                writer.writerow([r.name, "", "", "", r.error])
            for rank, (c, p) in enumerate(r.top, 1):
                writer.writerow([r.name, rank, c, f"{p:.6f}", ""])
    else:
        table = Table(title=f"{b.label}: top {top_k}")
        table.add_column("file")
        for i in range(1, min(top_k, len(b.classes)) + 1):
            table.add_column(f"#{i}")
        for r in results:
            cells = [f"{c} {p:.2f}" for c, p in r.top] if not r.error else [f"[red]{r.error}[/red]"]
            table.add_row(r.name, *cells)
        console.print(table)
    failed = sum(r.error is not None for r in results)
    if failed:
        err.print(f"[red]error:[/red] {failed} of {len(results)} files are not readable images")
        raise typer.Exit(1)


@app.command("serve")
def serve_cmd(
    bundle: Annotated[Path, typer.Argument(help="bundle folder from export-best")],
    host: str = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535)] = 8000,
    max_upload_mb: Annotated[float, typer.Option(min=0.001, help="request body limit")] = 10.0,
    max_files: Annotated[int, typer.Option(min=1, help="files per request")] = 16,
    max_megapixels: Annotated[float, typer.Option(min=0.001, help="pixels per image")] = 50.0,
    threads: Annotated[int | None, typer.Option(min=1, help="torch threads")] = None,
) -> None:
    """Serve a bundle over HTTP: an upload page at /, POST /predict, /model, /health, /docs."""
    import uvicorn

    from fishopt import predict, serve

    runner.set_threads(threads)
    loaded = predict.load_bundle(bundle)  # refuse a damaged bundle before binding the port
    limits = serve.Limits(
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_files=max_files,
        max_pixels=int(max_megapixels * 1e6),
    )
    err.print(f"serving {loaded.label} from {bundle} on http://{host}:{port}")
    uvicorn.run(serve.create_app(loaded, limits), host=host, port=port, log_level="warning")


@app.command("dashboard")
def dashboard_cmd(
    storage: StorageOpt = None,
    host: Annotated[str, typer.Option(help="address to bind; loopback unless --allow-remote")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(min=0, max=65535, help="0 picks a free port")] = 8080,
    allow_remote: Annotated[
        bool, typer.Option(help="allow a non-loopback --host (no login: anyone can edit)")
    ] = False,
    artifacts_dir: Annotated[
        Path | None,
        typer.Option(help=f"artifact store [env {config.ENV_ARTIFACTS}; default beside the db]"),
    ] = None,
) -> None:
    """Serve optuna-dashboard on fishopt's storage and artifact store."""
    from fishopt import dashboard

    settings = config.resolve(storage=storage, artifacts_dir=artifacts_dir)
    warning = dashboard.check_host(host, allow_remote)
    if warning:
        err.print(f"[yellow]{warning}[/yellow]")
    dash = dashboard.create(
        settings.storage,
        settings.artifacts_dir,
        host,
        port,
        on_sync_error=lambda msg: err.print(f"[yellow]could not write notes: {msg}[/yellow]"),
    )
    if dash.studies == 0:
        err.print(f"[yellow]no studies in {config.mask_url(settings.storage)} yet[/yellow]")
    err.print(
        f"optuna-dashboard for {config.mask_url(settings.storage)} (artifacts "
        f"{settings.artifacts_dir}) at {dash.address} ; Ctrl-C stops it",
        soft_wrap=True,
    )
    try:
        dash.serve_forever()
    except KeyboardInterrupt:
        err.print("dashboard stopped")


@app.command("report")
def report_cmd(
    studies: Annotated[list[str], typer.Argument(help="study names in the storage")],
    storage: StorageOpt = None,
    out: Annotated[Path, typer.Option(help="folder for the HTML pages and summary.md")] = Path(
        "fishopt-report"
    ),
) -> None:
    """Write a self-contained HTML report and a Markdown summary of one or more studies."""
    from fishopt import report

    written = report.build(config.resolve_storage(storage), studies, out)
    for line in written.findings:
        console.print(line, soft_wrap=True)
    console.print(
        f"wrote {written.index} (comparison), {len(written.pages)} study page(s) and "
        f"{written.summary}",
        soft_wrap=True,
    )


# ------------------------------------------------------------------ many workers (issue 4)

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


def _log(message: str) -> None:
    """One plain line on stderr, passwords masked (workers' logs end up in files and CI)."""
    print(config.redact(message, config.secrets()), file=sys.stderr, flush=True)


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
    from fishopt import worker

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
    from fishopt import doctor

    url = config.resolve_storage(storage)
    hb = config.resolve_heartbeat(heartbeat_interval, grace_period)
    report = doctor.examine(url, hb, name, fix=fix)
    for line in report.lines:
        console.print(config.redact(line, config.secrets(url)), soft_wrap=True, markup=False)
    if report.problems:
        raise typer.Exit(1)


def main() -> None:
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    from fishopt import redact

    redact.install()
    try:
        app()
    except FishoptError as exc:
        message = escape(config.redact(str(exc), config.secrets()))
        err.print(f"[red]error:[/red] {message}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except Exception:  # a bug: keep the traceback, but never with a password in it
        redact.print_exception()
        sys.exit(1)


if __name__ == "__main__":
    main()
