"""`replay`: how many trials a search of a finished grid study's space would have needed."""

from __future__ import annotations

from typing import Annotated

import typer

from fishopt import config
from fishopt.cli.common import StorageOpt, app, console


@app.command("replay")
def replay_cmd(
    name: Annotated[
        str, typer.Argument(metavar="STUDY", help="a finished grid study with repeats")
    ],
    storage: StorageOpt = None,
    margin: Annotated[
        float,
        typer.Option(
            min=0,
            metavar="POINTS",
            help="success: within this many F1 points of the best configuration's mean "
            "(raised to the study's own seed noise if that is larger)",
        ),
    ] = 1.0,
    replays: Annotated[
        int, typer.Option(min=1, metavar="INT", help="replayed searches per arm")
    ] = 100,
) -> None:
    """Replay random search, TPE and the full study's default on a finished grid study.

    Every search is replayed on the study's recorded curves (no training): the table says how
    often each would have declared a configuration within the margin of the best, against
    its budget in trials and epochs.
    """
    from fishopt.replay.answer import answer_study

    url = config.resolve_storage(storage)
    result = answer_study(url, name, margin / 100, replays)
    for line in result.lines():
        console.print(line, soft_wrap=True, markup=False)
