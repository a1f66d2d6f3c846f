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
from fishopt.data import survey


@data_app.command("info")
def data_info(
    data_arg: DataOpt = None,
    cache_dir: CacheOpt = None,
    image_size: Annotated[
        str, typer.Option(metavar="WxH", help="the size images are resized to")
    ] = "59x45",
    strict: StrictOpt = False,
) -> None:
    """Load a data set (decoding and caching it) and print what was found.

    Also the images' native sizes (a sample of a big set) and the size they are resized to, with
    a warning when that changes their aspect ratio.
    """
    settings = config.resolve(cache_dir=cache_dir)
    source, how = data.choose_source(data_arg, settings.data)
    err.print(how)
    target = data.parse_size(image_size)
    t0 = time.perf_counter()
    ds, hit = data.load(source, settings.cache_dir, target, strict=strict)
    counts = {c: int((ds.y == i).sum()) for i, c in enumerate(ds.classes)}
    console.print(
        f"{len(ds.y)} images in {len(ds.classes)} classes, {ds.X.shape[1]} features "
        f"({'from cache' if hit else 'decoded'} in {time.perf_counter() - t0:.2f}s)"
    )
    console.print(f"fingerprint {ds.fingerprint}")
    for c, n in counts.items():
        console.print(f"  {c}: {n}")
    if ds.skipped:
        console.print(f"skipped {len(ds.skipped)}: {'; '.join(ds.skipped[:3])}")
    found = survey.survey(source, ds)
    for line in _size_lines(found):
        console.print(line, markup=False, soft_wrap=True)
    if source.kind == "digits":
        console.print("not resized: the digits are used at 8x8, whatever --image-size says")
        return
    console.print(f"resized to {_wxh(target)} (--image-size)")
    for line in _distortion_lines(found, target):
        console.print(line, markup=False, soft_wrap=True)


HISTOGRAM_ROWS = 8  # sizes listed; the rest are summed in one line


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _size_lines(found: survey.Survey) -> list[str]:
    """'native size 590x445 (2700 of 2700 images)', or a histogram when sizes differ."""
    what = f"{found.examined} of {found.total} images"
    if found.sampled:
        what += ", a sample spread over the classes"
    if found.unreadable:
        what += f"; {found.unreadable} unreadable"
    if len(found.sizes) == 1:
        return [f"native size {_wxh(found.sizes[0][0])} ({what})"]
    if not found.sizes:
        return [f"native size unknown ({what})"]
    read = sum(count for _size, count in found.sizes)
    lines = [f"native sizes ({what}):"]
    for size, count in found.sizes[:HISTOGRAM_ROWS]:
        lines.append(f"  {_wxh(size):>11}  {count:>6}  {count / read:>4.0%}")
    rest = found.sizes[HISTOGRAM_ROWS:]
    if rest:
        n = sum(count for _size, count in rest)
        lines.append(f"  {len(rest)} other sizes: {n} images ({n / read:.0%})")
    return lines


def _distortion_lines(found: survey.Survey, target: tuple[int, int]) -> list[str]:
    """A warning per native size the resize stretches, and the --image-size that would not."""
    stretched = found.distortions(target)
    if not stretched:
        return []
    read = sum(count for _size, count in found.sizes)
    lines = []
    for d in stretched[:3]:
        share = f" ({d.count / read:.0%} of images)" if len(found.sizes) > 1 else ""
        lines.append(
            f"warning: {_wxh(d.size)} -> {_wxh(target)} changes the aspect ratio by "
            f"{d.change:.0%}{share}"
        )
    if len(stretched) > 3:
        lines.append(f"  and {len(stretched) - 3} more sizes")
    most_common = found.sizes[0][0]
    keep = next((d.suggestion for d in stretched if d.size == most_common), None)
    if keep is not None:
        whose = "it" if len(found.sizes) == 1 else f"the {_wxh(most_common)} images' aspect ratio"
        lines.append(f"  pass --image-size {_wxh(keep)} to keep {whose}")
    return lines


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
