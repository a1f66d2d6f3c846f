"""`python -m bench.replay_tables`: the replay tables of figure 4, built with fishopt's own trials.

Each table is a grid study (``bench/studies/replay-<name>.toml``: the ``full`` study's space
as a grid of optimizer, learning rate, depth, width and dropout, every point with 3 seeds for
the full study's 20 epochs) run by the trial loop that ships, in one process on one core, into
a SQLite file under ``--cache-dir`` (so an interrupted build resumes), then written as a small
gzipped JSON table to ``bench/tables/<name>.json.gz``, which is kept in the repository: figure
4 and the tests read it instead of training again.

Costs on the 2-core Xeon of the run of record (one core, nice 10, beside other work): digits
about 12 CPU-minutes, the synthetic set about 20 (see each table's ``meta``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import optuna
import torch
from optuna.trial import TrialState

from fishopt.replay import table as tables
from fishopt.search.loop import run_worker
from fishopt.search.session import Options, recorded_spec
from fishopt.training.hardware import cpu_info

HERE = Path(__file__).resolve().parent
TABLES = {"digits": "digits", "synthetic": "synthetic"}  # table name -> --data
OUT = HERE / "tables"


def study_file(name: str) -> Path:
    return HERE / "studies" / f"replay-{name}.toml"


def table_path(name: str, out: Path = OUT) -> Path:
    return out / f"{name}.json.gz"


def build(name: str, cache_dir: Path, out: Path = OUT, note: str = "", log=print) -> Path:
    """Run (or resume) the grid study of table ``name`` and write its table."""
    torch.set_num_threads(1)
    cache_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{cache_dir / 'tables.db'}"
    opts = Options(
        study=str(study_file(name)),
        data=TABLES[name],
        storage=url,
        threads=1,
        artifacts_dir=cache_dir / "artifacts",
    )
    cpu0, wall0 = time.process_time(), time.perf_counter()
    session, outcome = run_worker(opts, lambda m: log(f"  {m}"), distributed=False)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    if outcome.reason != "budget":
        raise SystemExit(f"{name}: the grid stopped before its end ({outcome.reason})")
    st = optuna.load_study(study_name=session.study.study_name, storage=url)
    done = st.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    took = [(t.datetime_complete - t.datetime_start).total_seconds() for t in done]
    train = [sum(h["seconds"] for h in t.user_attrs.get("history", [])) for t in done]
    meta = {
        "command": f"python -m bench.replay_tables --only {name}",
        "spec_file": f"bench/studies/replay-{name}.toml",
        "data": TABLES[name],
        "data_source": st.user_attrs.get("fishopt", {}).get("data_source"),
        "split": st.user_attrs.get("fishopt", {}).get("split"),
        "study_seed": recorded_spec(st).seed,
        "seeds": "each trial's training seed is derived from the study seed and its number "
        "(fishopt.search.objective.derive_seed); the seeds of every curve are in trial_seeds",
        "cpu": cpu_info()[0],
        "threads": 1,
        "torch": torch.__version__,
        "optuna": optuna.__version__,
        "python": platform.python_version(),
        "built": min(t.datetime_start for t in done).isoformat(timespec="seconds"),
        "finished": max(t.datetime_complete for t in done).isoformat(timespec="seconds"),
        "trials": len(done),
        "trial_seconds_total": round(sum(took), 1),
        "train_seconds_total": round(sum(train), 1),
        "trial_seconds_median": round(statistics.median(took), 3),
        "cpu_seconds_this_run": round(cpu, 1),
        "wall_seconds_this_run": round(wall, 1),
        "load_average_at_end": " ".join(f"{v:.2f}" for v in os.getloadavg()),
        **({"note": note} if note else {}),
    }
    table = tables.from_study(st, recorded_spec(st), meta)
    names = [a.name for a in table.axes]
    seeds: dict[int, list[int]] = {}
    for t in sorted(done, key=lambda t: t.number):
        point = tuple(t.params.get(n, a.values[0]) for n, a in zip(names, table.axes, strict=True))
        seeds.setdefault(table.alias[point], []).append(int(t.user_attrs["seed"]))
    table.meta["trial_seeds"] = [seeds[i][: table.n_seeds] for i in range(table.n_configs)]
    path = table.save(table_path(name, out))
    log(
        f"{name}: {table.n_configs} configurations x {table.n_seeds} seeds x {table.epochs} "
        f"epochs -> {path} ({path.stat().st_size / 1024:.0f} KB); seed noise "
        f"{100 * table.noise():.2f} F1 points; this run {cpu:.0f} CPU-s, {wall:.0f} s wall"
    )
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.replay_tables", description=__doc__)
    ap.add_argument("--only", default="digits,synthetic", help="tables to build, in order")
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "fishopt-bench" / "replay",
        help="where the grid studies are trained (a SQLite file; an interrupted build resumes)",
    )
    ap.add_argument("--out", type=Path, default=OUT, help="folder for the tables")
    ap.add_argument("--rebuild", action="store_true", help="write a table that exists again")
    ap.add_argument("--note", default="", help="a line kept in the table's meta")
    args = ap.parse_args(sys.argv[1:] if argv is None else argv)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    for name in [n.strip() for n in args.only.split(",") if n.strip()]:
        if name not in TABLES:
            raise SystemExit(f"--only {name}: unknown table; known: {', '.join(TABLES)}")
        path = table_path(name, args.out)
        if path.exists() and not args.rebuild:
            print(f"{name}: {path} exists (--rebuild to write it again)")
            continue
        print(f"{name}: training the grid of {study_file(name).name} (one core) ...")
        build(name, args.cache_dir, args.out, args.note)
    print(f"done {dt.datetime.now(dt.UTC):%Y-%m-%dT%H:%M:%SZ}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
