"""`python -m bench` (`make bench`): measure the performance issue's figures, write RESULTS.md.

Each figure is a ratio A / B measured side by side in this one run (interleaved rounds), printed
as it goes and written with the machine description to ``bench/RESULTS.md``. Nothing here passes
or fails on time: the exit status says only whether the suite ran.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

from bench import common, report

FIGURES = ("1", "2", "3", "4", "5", "6", "7")


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("--quick", action="store_true", help="small sizes, 2 rounds: a smoke run")
    ap.add_argument("--rounds", type=int, help="A/B rounds per figure (default 5; quick 2)")
    ap.add_argument("--only", default=",".join(FIGURES), help="figures to run, e.g. 1,2")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for figures 1-4")
    ap.add_argument(
        "--out",
        type=Path,
        help="default bench/RESULTS.md; with --quick bench/RESULTS-quick.md, so a smoke run "
        "never replaces the figures of record",
    )
    ap.add_argument(
        "--cache-dir",
        type=Path,
        default=Path.home() / ".cache" / "fishopt-bench",
        help="where the generated photos and their decoded features are kept between runs",
    )
    ap.add_argument("--note", default="", help="a line about the machine's state, for RESULTS.md")
    ap.add_argument(
        "--render", action="store_true", help="re-write RESULTS.md from RESULTS.json and NOTES.md"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    here = Path(__file__).parent
    args.out = args.out or here / ("RESULTS-quick.md" if args.quick else "RESULTS.md")
    if args.render:
        report.rerender(args.out)
        return 0
    import torch

    torch.set_num_threads(args.threads)  # before any tensor work
    from bench import fig_data, fig_study, fig_train

    fig_study.quiet()

    quick = args.quick
    rounds = args.rounds or (2 if quick else 5)
    only = {f.strip() for f in args.only.split(",")}
    cache = args.cache_dir
    sizes = {
        "train set": (60 if quick else 300, (118, 89)),  # figures 1, 2, 7
        "photos": (10 if quick else 40, (590, 445)),  # figure 3
        "study set": (40 if quick else 150, (118, 89)),  # figures 4-6
    }
    started = time.perf_counter()
    machine = common.machine(args.threads)
    print("machine:", machine)
    run = {
        "id": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join(["python -m bench", *sys.argv[1:]]) if argv is None else "bench",
        "rounds": rounds,
        "quick": quick,
        "note": args.note,
        "machine": machine,
        "sizes": sizes,
    }

    class Figures(list):
        """Saves RESULTS.md after every figure, so an interrupted run keeps what it measured."""

        def append(self, fig: common.Figure) -> None:
            super().append(fig)
            report.save(args.out, self, run)

        def extend(self, more) -> None:
            for fig in more:
                self.append(fig)

    figs = Figures()
    with tempfile.TemporaryDirectory(prefix="fishopt-bench-") as tmp:
        scratch = Path(tmp)
        if {"1", "2", "7"} & only:
            ds = common.features(cache, *sizes["train set"])
            if "1" in only:
                print("figure 1: fishopt trainer vs seed loop")
                figs.append(fig_train.figure1(ds, rounds, 1 if quick else 3))
            if "2" in only:
                for batch, target in ((50, 0.5), (256, 0.7)):
                    print(f"figure 2: training GFLOP/s / GEMM GFLOP/s at batch {batch}")
                    figs.append(fig_train.figure2(ds, rounds, 1 if quick else 3, batch, target))
            if "7" in only:
                print("figure 7: bf16 autocast / fp32 per batch size")
                figs.extend(fig_train.figure7(ds, rounds, 1 if quick else 2))
        if "3" in only:
            print("figure 3: preprocessing")
            root = common.photos(cache, *sizes["photos"])
            figs.extend(fig_data.figure3(root, scratch, rounds))
        if "4" in only:
            from bench import fig_replay

            print("figure 4: searches replayed on recorded grids (bench/tables), 2 processes")
            figs.append(fig_replay.figure4(50 if quick else 200, processes=2))
        if {"5", "6"} & only:
            root = common.photos(cache, *sizes["study set"])
            feat_cache = cache / "fishopt-cache"
            common.features(cache, *sizes["study set"])  # decode once, outside the timings
            if "5" in only:
                n = 40 if quick else 200
                print("figure 5: study overhead, 2 workers")
                figs.append(fig_study.figure5(root, feat_cache, scratch, rounds, n, 2))
                print("figure 5: study overhead, 1 process, trials of about 0.3 s")
                figs.append(
                    fig_study.figure5(
                        root,
                        feat_cache,
                        scratch,
                        rounds,
                        n // 2,
                        1,
                        "overhead-long",
                        "5 (1 process)",
                    )
                )
            if "6" in only:
                print("figure 6: 2 workers x 1 thread vs 1 worker x 2 threads")
                n = 8 if quick else 16
                figs.append(fig_study.figure6(root, feat_cache, scratch, rounds, n))
    elapsed = time.perf_counter() - started
    for f in figs:
        print(f.line())
    print(f"wrote {args.out} ({elapsed:.0f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
