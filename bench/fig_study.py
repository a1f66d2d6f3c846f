"""Figures 4, 5 and 6: whole studies run by the trial loop that ships (``search.loop``).

Workers are processes that each run ``loop.run_worker``, exactly as ``fishopt worker`` and each
``fishopt study --jobs N`` child do. Timing starts when every worker has its session (a barrier
in ``on_session``), so interpreter start-up and data loading, which a long study pays once, do
not count as per-trial overhead.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import statistics
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import torch
from optuna.trial import FrozenTrial, TrialState

from bench.common import Figure
from fishopt import config, shutdown
from fishopt.bundle.artifacts import keep_best
from fishopt.search import claim, loop, summary
from fishopt.search.session import Options, Session, build_context, open_study, spec_for
from fishopt.search.spec import StudySpec
from fishopt.storage import locks
from fishopt.storage.connect import open_storage
from fishopt.training.optim import OptimSpec, build_optimizer

STUDIES = Path(__file__).resolve().parent / "studies"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@dataclass(frozen=True)
class Job:
    spec_name: str
    root: Path  # Kaggle-layout photos
    cache_dir: Path
    storage: str
    name: str
    n_trials: int
    seed: int = 0
    epochs: int | None = None  # None: the spec's

    def options(self, threads: int | None = None) -> Options:
        return Options(
            study=str(STUDIES / f"{self.spec_name}.toml"),
            data=str(self.root),
            storage=self.storage,
            n_trials=self.n_trials or None,
            epochs=self.epochs,
            seed=self.seed,
            name=self.name,
            threads=threads,
            cache_dir=self.cache_dir,
            artifacts_dir=self.cache_dir / "bench-artifacts",
        )


def quiet() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def _start_up() -> None:
    """What a worker pays once: torch's first optimizer imports torch._dynamo (seconds)."""
    build_optimizer(OptimSpec("Adam"), [torch.nn.Parameter(torch.zeros(1))])


def _silent(_message: str) -> None:
    pass


def _worker(job: Job, threads: int, barrier) -> None:
    torch.set_num_threads(threads)  # first, before any tensor work
    shutdown.install()  # ends as a `fishopt worker` process does
    quiet()
    _start_up()
    loop.run_worker(
        job.options(threads), _silent, on_session=lambda _s: barrier.wait(), keep_model=keep_best
    )


def run_parallel(job: Job, workers: int, threads: int) -> tuple[float, list]:
    """Run ``job`` with ``workers`` processes x ``threads`` threads; (wall seconds, trials)."""
    quiet()
    mpc = mp.get_context("spawn")
    barrier = mpc.Barrier(workers + 1)
    procs = [mpc.Process(target=_worker, args=(job, threads, barrier)) for _ in range(workers)]
    for p in procs:
        p.start()
    try:
        barrier.wait(timeout=300)
        t0 = time.perf_counter()
        for p in procs:
            p.join()
        wall = time.perf_counter() - t0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
    if any(p.exitcode != 0 for p in procs):
        codes = [p.exitcode for p in procs]
        raise RuntimeError(f"a worker of {job.name} failed: exit codes {codes}")
    st = optuna.load_study(study_name=job.name, storage=job.storage)
    return wall, st.get_trials(deepcopy=False, states=FINISHED)


def _train_seconds(trials: list) -> float:
    return sum(h["seconds"] for t in trials for h in t.user_attrs.get("history", []))


# ------------------------------------------------------------------------------------ figure 4

# Search arms, each a spec under bench/studies/: the first is the figure's A side (chosen before
# any full-size measurement: the cheapest pruner, so the likeliest to fit 1/3 of the grid's
# epochs), the others are reported beside it. The reference is search-grid (every point with 3
# training seeds).
SEARCH_ARMS = ("search-sh", "search-hyperband", "search-tpe")
TARGET_GAP = 0.01  # within 1 F1 point of the best configuration's mean over seeds


@dataclass(frozen=True)
class StudyRun:
    """One finished study: its spec, its trials in the order they ran, and the wall time."""

    spec: StudySpec
    trials: list[FrozenTrial]
    wall: float

    @property
    def epochs(self) -> int:
        return sum(_epochs(t) for t in self.trials)


def _epochs(t: FrozenTrial) -> int:
    return int(t.user_attrs.get("epochs_run", 0))


def _search(job: Job) -> StudyRun:
    """One in-process study through the trial loop that ships."""
    quiet()
    _start_up()
    t0 = time.perf_counter()

    def start(_s: Session) -> None:
        nonlocal t0
        t0 = time.perf_counter()

    session, _ = loop.run_worker(
        job.options(), _silent, distributed=False, on_session=start, keep_model=keep_best
    )
    wall = time.perf_counter() - t0
    trials = session.study.get_trials(deepcopy=False, states=FINISHED)
    return StudyRun(session.spec, sorted(trials, key=lambda t: t.number), wall)


def declared_best(spec: StudySpec, trials: list[FrozenTrial]) -> str | None:
    """The configuration a study would report as best: the highest mean valid F1 over its
    completed trials, among configurations completed ``repeats`` times where there are any.

    With repeats, a configuration is only declared once it has been re-evaluated with other
    seeds, so one lucky trial of a mediocre configuration cannot win.
    """
    rows = [r for r in summary.summarize(spec, trials) if r.complete]
    checked = [r for r in rows if r.complete >= spec.repeats]
    return (checked or rows)[0].key if rows else None


def _truth(grid: StudyRun) -> dict[str, float]:
    """Each configuration's mean valid F1 over the grid's seeds: what a search is judged by."""
    return {r.key: r.mean for r in summary.summarize(grid.spec, grid.trials) if r.complete}


def _arm_result(run: StudyRun, truth: dict[str, float], target: float) -> tuple[bool, int | None]:
    """(final declaration within target, epochs after which every declaration was)."""
    epochs, since = 0, None
    for i, t in enumerate(run.trials):
        epochs += _epochs(t)
        key = declared_best(run.spec, run.trials[: i + 1])
        ok = key is not None and truth.get(key, -math.inf) >= target
        since = (since if since is not None else epochs) if ok else None
    return since is not None, since


def _grid_single_passes(grid: StudyRun, truth: dict[str, float]) -> list[float]:
    """Each repeat of the grid taken alone (one seed per point, best single trial declared):
    the reference mean of the configuration it declares."""
    out = []
    for r in range(grid.spec.repeats):
        one = [t for t in grid.trials if t.params.get("repeat", 0) == r and t.value is not None]
        best = max(one, key=lambda t: (t.value, -t.number))
        out.append(truth[summary.group_key(best, False)])
    return out


def figure4(
    root: Path, cache_dir: Path, scratch: Path, seeds: int, epochs: int | None = None
) -> Figure:
    fig = Figure(
        "4",
        "search: epochs of a one-seed grid / epochs of fishopt's search "
        f"({SEARCH_ARMS[0]}), target = within 1 F1 point of the best configuration's mean",
        f"{SEARCH_ARMS[0]} (bench/studies/{SEARCH_ARMS[0]}.toml): epochs trained, all trials",
        "exhaustive grid, one seed per point, no pruning: epochs trained",
        "epochs",
        3.0,
        ">= 3x fewer epochs than the grid, >= 80% of sampler seeds within 1 F1 point",
    )
    rows: list[str] = []
    hits: dict[str, list[bool]] = {a: [] for a in SEARCH_ARMS}
    spent: dict[str, list[int]] = {a: [] for a in SEARCH_ARMS}
    reach: dict[str, list[int]] = {a: [] for a in SEARCH_ARMS}
    grid_hits: list[bool] = []
    regret: dict[str, list[float]] = {a: [] for a in (*SEARCH_ARMS, "one-seed grid")}
    reference = 0
    for s in range(seeds):
        runs = {}
        for name in ("search-grid", *SEARCH_ARMS):
            url = f"sqlite:///{scratch / f'{name}-{s}.db'}"
            runs[name] = _search(Job(name, root, cache_dir, url, name, 0, s, epochs))
        grid = runs["search-grid"]
        truth = _truth(grid)
        best = max(truth.values())
        target = best - TARGET_GAP
        one_pass = grid.epochs // grid.spec.repeats
        reference = grid.epochs
        declared = _grid_single_passes(grid, truth)
        passes = [v >= target for v in declared]
        grid_hits += passes
        regret["one-seed grid"] += [best - v for v in declared]
        near = sum(v >= target for v in truth.values())
        rows.append(
            f"seed {s}: best configuration mean {best:.4f} over {grid.spec.repeats} seeds; "
            f"{near} of {len(truth)} configurations within 1 point; one-seed grids "
            f"({one_pass} epochs each) hit it {sum(passes)}/{len(passes)}; "
            f"reference grid {grid.epochs} epochs, {grid.wall:.0f}s"
        )
        for name in SEARCH_ARMS:
            run = runs[name]
            ok, since = _arm_result(run, truth, target)
            key = declared_best(run.spec, run.trials)
            hits[name].append(ok)
            spent[name].append(run.epochs)
            regret[name].append(best - truth.get(key or "", 0.0))
            if since is not None:
                reach[name].append(since)
            pruned = sum(t.state == TrialState.PRUNED for t in run.trials)
            rows.append(
                f"seed {s}, {name}: declared mean {truth.get(key or '', math.nan):.4f} "
                f"({'within' if ok else 'NOT within'} 1 point), {run.epochs} epochs in "
                f"{len(run.trials)} trials ({pruned} pruned), {run.wall:.0f}s"
                + (f"; declarations within target from epoch {since}" if ok else "")
            )
        head = SEARCH_ARMS[0]
        fig.add(one_pass, spent[head][-1])
        print("  " + "\n  ".join(rows[-1 - len(SEARCH_ARMS) :]))
    rate = {a: sum(h) / len(h) for a, h in hits.items()}
    grid_rate = sum(grid_hits) / len(grid_hits)
    fig.extra = {
        "per seed": rows,
        "success (declared configuration within 1 point of the best mean)": "; ".join(
            [f"{a} {sum(hits[a])}/{len(hits[a])}" for a in SEARCH_ARMS]
            + [f"one-seed grid {sum(grid_hits)}/{len(grid_hits)} (seeds x repeats)"]
        ),
        "median epochs, all trials": "; ".join(
            f"{a} {statistics.median(spent[a]):.0f}" for a in SEARCH_ARMS
        )
        + f"; one-seed grid {fig.a[0]:.0f}; reference grid {reference}",
        "median epochs until every later declaration was within target (successes only)": "; ".join(
            f"{a} {statistics.median(reach[a]):.0f}" if reach[a] else f"{a} -" for a in SEARCH_ARMS
        ),
        "median shortfall of the declared configuration's mean from the best mean (F1)": "; ".join(
            f"{a} {statistics.median(v):.3f}" for a, v in regret.items()
        ),
        "epochs per trial": epochs or "as in the specs (8)",
    }
    fig.note = (
        f"met only if the median ratio is >= 3 and {SEARCH_ARMS[0]} succeeds on >= 80% of "
        f"sampler seeds; success here {rate[SEARCH_ARMS[0]]:.0%} (one-seed grid {grid_rate:.0%})"
    )
    fig.also_met = rate[SEARCH_ARMS[0]] >= 0.8
    return fig


# ------------------------------------------------------------------------------------ figure 5

BOUND_GAP = 0.1  # issue 19: several workers within this of the in-memory bound


def figure5(
    root: Path,
    cache_dir: Path,
    scratch: Path,
    rounds: int,
    n_trials: int,
    workers: int,
    spec: str = "overhead",
    number: str = "5",
    target: float = 0.85,
) -> Figure:
    """Share of the machine spent training in a study of cheap trials.

    ``workers`` processes x 1 thread share one SQLite study. ``overhead`` is TPE + median
    pruning over trials of ~0.1 s; ``overhead-long`` trains every trial ~0.3 s, unpruned (the
    issue's "trials of 0.3 s in one process"). With several workers the target is the issue's:
    within ``BOUND_GAP`` of the same study in one process on Optuna's in-memory storage,
    measured first in the same run (what is left without a database: TPE's sampling, building
    models), since no number of workers can do better than that.
    """
    bound, bound_line = _in_memory_bound(root, cache_dir, n_trials, spec)
    target_text = f">= {target}"
    if workers > 1:
        target = round(bound - BOUND_GAP, 3)
        target_text = f">= {target} (in-memory bound {bound:.3f} - {BOUND_GAP})"
    fig = Figure(
        number,
        f"study overhead: time in training loops / (wall x cores), {n_trials} cheap trials "
        f"(bench/studies/{spec}.toml), {workers} worker(s)",
        "seconds inside train() epoch loops, summed over trials",
        f"wall seconds x {workers} cores ({workers} worker(s) x 1 thread, one SQLite study)",
        "seconds",
        target,
        target_text,
    )
    per_trial, train_per_trial = [], []
    for r in range(rounds):
        url = f"sqlite:///{scratch / f'overhead-{number}-{r}.db'}"
        job = Job(spec, root, cache_dir, url, "overhead", n_trials)
        wall, trials = run_parallel(job, workers, 1)
        inside = _train_seconds(trials)
        fig.add(inside, wall * workers)
        per_trial.append((wall * workers - inside) / max(len(trials), 1))
        train_per_trial.append(inside / max(len(trials), 1))
        pruned = sum(t.state == TrialState.PRUNED for t in trials)
        print(
            f"  round {r + 1}/{rounds}: {len(trials)} trials ({pruned} pruned) in {wall:.1f}s, "
            f"train {inside:.1f}s -> {fig.ratios[-1]:.3f}"
        )
    fig.extra = {
        "training seconds per trial, median": f"{statistics.median(train_per_trial):.3f}",
        "core-seconds per trial outside training, median": f"{statistics.median(per_trial):.3f}",
        "storage": "SQLite file (WAL), shared by the workers",
        "same study, 1 process, Optuna InMemoryStorage (what storage round-trips cost)": (
            bound_line
        ),
    }
    return fig


def _in_memory_bound(
    root: Path, cache_dir: Path, n_trials: int, spec_name: str
) -> tuple[float, str]:
    """The same study in one process on InMemoryStorage: the overhead left without a database
    (the share of wall time in training, and a line saying how it was found)."""
    quiet()
    _start_up()
    job = Job(spec_name, root, cache_dir, "sqlite:///:memory:", "bound", n_trials)
    opts = job.options(1)
    settings = config.resolve(storage=job.storage, cache_dir=cache_dir)
    hb = config.resolve_heartbeat()
    spec = spec_for(opts, open_storage(job.storage))
    from fishopt import data

    ctx, _hit, _s = build_context(spec, data.parse_source(str(root)), settings)
    memory = optuna.storages.InMemoryStorage()
    st = open_study(ctx, memory, "bound", distributed=False)  # type: ignore[arg-type]
    claim.set_budget(st, n_trials)
    session = Session(opts, settings, hb, memory, ctx, st, locks.ThreadLock())  # type: ignore[arg-type]
    t0 = time.perf_counter()
    loop.run(session, flags=loop.Flags(), log=_silent)
    wall = time.perf_counter() - t0
    inside = _train_seconds(st.get_trials(deepcopy=False, states=FINISHED))
    line = f"train {inside:.1f}s / wall {wall:.1f}s x 1 core = {inside / wall:.3f}"
    print(f"  in-memory bound: {line}")
    return inside / wall, line


# ------------------------------------------------------------------------------------ figure 6


def figure6(root: Path, cache_dir: Path, scratch: Path, rounds: int, n_trials: int) -> Figure:
    fig = Figure(
        "6",
        "parallel trials/hour: 2 workers x 1 thread / 1 worker x 2 threads",
        "2 processes x 1 torch thread, one SQLite study",
        "1 process x 2 torch threads",
        "trials/hour",
        1.3,
        ">= 1.3x",
    )

    def rate(workers: int, threads: int, r: int) -> float:
        url = f"sqlite:///{scratch / f'parallel-{workers}x{threads}-{r}.db'}"
        wall, trials = run_parallel(
            Job("parallel", root, cache_dir, url, "parallel", n_trials), workers, threads
        )
        return len(trials) / wall * 3600

    for r in range(rounds):
        if r % 2 == 0:
            a, b = rate(2, 1, r), rate(1, 2, r)
        else:
            b, a = rate(1, 2, r), rate(2, 1, r)
        fig.add(a, b)
        print(f"  round {r + 1}/{rounds}: A {a:.0f}/h  B {b:.0f}/h  ratio {a / b:.3g}")
    fig.extra = {"trials per measurement": n_trials, "trial": "2655-256-128-9, batch 50, 2 epochs"}
    return fig
