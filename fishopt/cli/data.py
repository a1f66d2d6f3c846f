"""`data info|synth|fetch`: inspecting, generating and downloading image sets."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from fishopt import config, data
from fishopt.cli.common import (
    CacheOpt,
    DataOpt,
    StrictOpt,
    _callback,
    _progress,
    console,
    data_app,
    err,
)


@data_app.command("info")
def data_info(
    data_arg: DataOpt = None,
    cache_dir: CacheOpt = None,
    image_size: Annotated[
        str, typer.Option(metavar="WxH", help="the size images are resized to")
    ] = "59x45",
    strict: StrictOpt = False,
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
    out: Annotated[Path, typer.Option(metavar="PATH", help="folder to write Fish_Dataset/ into")],
    per_class: Annotated[
        int, typer.Option(min=3, metavar="INT", help="images per species")
    ] = data.DEFAULT_SYNTHETIC_PER_CLASS,
    size: Annotated[str, typer.Option(metavar="WxH", help="photo size")] = "590x445",
    seed: Annotated[int, typer.Option(min=0, metavar="INT", help="generator seed")] = 0,
) -> None:
    """Write the synthetic fish set in the Kaggle layout (photos and GT masks)."""
    from fishopt.data import synthetic

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
def data_fetch(
    handle: Annotated[
        str, typer.Option(metavar="OWNER/NAME", help="Kaggle dataset handle")
    ] = "crowww/a-large-scale-fish-dataset",
) -> None:
    """Download the Kaggle fish set with kagglehub (needs credentials and network)."""
    from fishopt.data.fetch import fetch_kaggle

    console.print(str(fetch_kaggle(handle)))
