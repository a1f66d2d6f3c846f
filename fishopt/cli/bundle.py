"""`export-best`, `predict`, `serve`: the final model and its uses."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import optuna
import typer
from rich.markup import escape
from rich.table import Table

from fishopt import config
from fishopt.cli.common import ArtifactsOpt, CacheOpt, DataOpt, StorageOpt, _fmt, app, console, err
from fishopt.errors import FishoptError


@app.command("export-best")
def export_best_cmd(
    name: Annotated[str, typer.Argument(metavar="STUDY", help="study name in the storage")],
    out: Annotated[
        Path | None,
        typer.Option(metavar="PATH", help="bundle folder (default: ./STUDY-bundle)"),
    ] = None,
    retrain: Annotated[
        bool, typer.Option("--retrain", help="train the best params again on train+valid")
    ] = False,
    onnx: Annotated[
        bool, typer.Option("--onnx", help="also write model.onnx, checked on test")
    ] = False,
    storage: StorageOpt = None,
    artifacts_dir: ArtifactsOpt = None,
    data_arg: DataOpt = None,
    cache_dir: CacheOpt = None,
) -> None:
    """Write the study's best model as a bundle, from the weights kept while it ran."""
    from fishopt.bundle import export

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    settings = config.resolve(storage=storage, cache_dir=cache_dir, artifacts_dir=artifacts_dir)
    done = export.export_best(
        name, settings, out, retrain_model=retrain, onnx=onnx, data_flag=data_arg
    )
    from fishopt.bundle.card import held_out_text

    meta, test = done.meta, done.meta["metrics"]["test"]
    console.print(
        f"wrote {done.path} (trial {meta['source']['trial']}, weights {meta['weights_origin']}, "
        f"valid F1 {_fmt(meta['metrics']['valid_f1'])}"
        + (", model.onnx checked" if meta.get("onnx") else "")
        + ")",
        soft_wrap=True,
    )
    if test:
        console.print(f"test split ({test['n']} images): {held_out_text(test)}", soft_wrap=True)
        if test.get("warning"):
            err.print(f"[yellow]warning: {escape(test['warning'])}[/yellow]", soft_wrap=True)
    if retrain:
        tt = meta["metrics"]["trial_test"]
        console.print(
            f"trial as found: test acc {_fmt(tt['accuracy'])}, test F1 {_fmt(tt['macro_f1'])}"
        )


@app.command("predict")
def predict_cmd(
    bundle: Annotated[
        Path, typer.Argument(metavar="BUNDLE", help="bundle folder from export-best")
    ],
    paths: Annotated[
        list[Path], typer.Argument(metavar="PATH", help="images or folders of images")
    ],
    top_k: Annotated[
        int, typer.Option("--top-k", min=1, metavar="K", help="classes per image")
    ] = 3,
    fmt: Annotated[
        str, typer.Option("--format", metavar="FORMAT", help="table, json or csv")
    ] = "table",
) -> None:
    """Predict the species of images with an exported bundle."""
    import csv
    import json

    from fishopt.bundle import predict

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
    workers: Annotated[
        int, typer.Option(min=1, help="server processes, each with the same limits")
    ] = 1,
    threads: Annotated[
        int | None, typer.Option(min=1, help="torch threads per process [CPUs / workers]")
    ] = None,
) -> None:
    """Serve a bundle over HTTP: upload page at /, POST /predict, /model, /card, /health, /docs."""
    import os

    import uvicorn

    from fishopt import serve
    from fishopt.bundle import predict

    loaded = predict.load_bundle(bundle)  # refuse a damaged bundle before binding the port
    limits = serve.Limits(
        max_upload_bytes=int(max_upload_mb * 1024 * 1024),
        max_files=max_files,
        max_pixels=int(max_megapixels * 1e6),
    )
    # Workers share the CPUs: by default each gets its share, not all of them.
    per_worker = threads or max(1, (os.cpu_count() or 1) // workers)
    where = f"http://{host}:{port}"
    if workers == 1:
        from fishopt.training.hardware import set_threads

        set_threads(per_worker)
        err.print(f"serving {loaded.label} from {bundle} on {where}", soft_wrap=True)
        uvicorn.run(serve.create_app(loaded, limits), host=host, port=port, log_level="warning")
        return
    # uvicorn starts each worker fresh from an import string; the settings go by environment.
    os.environ.update(serve.worker_env(bundle, limits, per_worker))
    err.print(f"serving {loaded.label} from {bundle} on {where}, {workers} workers", soft_wrap=True)
    uvicorn.run(
        serve.WORKER_FACTORY,
        factory=True,
        workers=workers,
        host=host,
        port=port,
        log_level="warning",
    )
