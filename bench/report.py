"""RESULTS.md: the figures, their targets, the machine, and the notes on what bounds each miss.

Figures are also kept as JSON beside it (``RESULTS.json``) and merged by figure number, so that
``--only 4`` re-measures one figure and keeps the others, each labelled with the run it came from.
The files are rewritten after every figure, so an interrupted run keeps what it measured.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from dataclasses import asdict
from pathlib import Path

from bench.common import Figure

NOTES = Path(__file__).parent / "NOTES.md"
# Results of the benchmarks that run on their own (``python -m bench.calibration``, ...): each
# writes its file, and RESULTS.md carries them after the figures.
OWN_RESULTS = [Path(__file__).parent / name for name in ("CALIBRATION.md", "CHAOS.md", "REPLAY.md")]


def _fmt(v: float) -> str:
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def _atomic_write(path: Path, text: str) -> None:
    """A crash mid-write leaves the previous file in place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {"runs": {}, "figures": {}}


def save(out: Path, figs: list[Figure], run: dict) -> None:
    """Merge this run's figures into RESULTS.json (by number) and re-render RESULTS.md."""
    store_path = out.with_suffix(".json")
    store = _load(store_path)
    store["runs"][run["id"]] = run
    for f in figs:
        store["figures"][f.number] = {**asdict(f), "run": run["id"]}
    used = {f["run"] for f in store["figures"].values()}
    store["runs"] = {k: v for k, v in store["runs"].items() if k in used}
    _atomic_write(store_path, json.dumps(store, indent=1))
    _atomic_write(out, render(store))


def rerender(out: Path) -> None:
    """RESULTS.md again from RESULTS.json, e.g. after NOTES.md was edited; measures nothing."""
    _atomic_write(out, render(_load(out.with_suffix(".json"))))


def render(store: dict) -> str:
    runs = store["runs"]
    figs = []
    for number in sorted(store["figures"], key=lambda n: (n.split()[0], n)):
        d = dict(store["figures"][number])
        run_id = d.pop("run")
        figs.append((Figure(**d), run_id))
    out = [
        "# fishopt benchmark results",
        "",
        "Every figure is A / B measured side by side in one run on the same data, in interleaved "
        "rounds (A-B, then B-A, ...); the ratio shown is the median over the rounds with its "
        "min-max. Benchmarks print figures; no test passes or fails on time. Re-run with "
        "`python -m bench` (all figures, ~20-30 min on 2 cores) or `python -m bench --only N`.",
        "",
        "## Runs",
        "",
    ]
    for run_id, run in runs.items():
        quick = " **(--quick: a smoke run, not figures of record)**" if run["quick"] else ""
        out.append(
            f"- run `{run_id}`: `{run['command']}`, {run['rounds']} rounds{quick}; "
            f"load average at start {run['machine']['load average at start']}"
            + (f"; {run['note']}" if run.get("note") and run["note"] not in run["command"] else "")
        )
    latest = runs[max(runs)] if runs else None
    if latest:
        out += ["", "## Machine", "", "| | |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in latest["machine"].items()]
        out += ["", "Data (synthetic fish, Kaggle layout):"]
        out += [
            f"- {k}: {n} per class x 9 classes, {w}x{h} PNG"
            for k, (n, (w, h)) in latest["sizes"].items()
        ]
    out += [
        "",
        "## Figures",
        "",
        "| # | figure | A (median) | B (median) | A/B median | min - max | target | met | run |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for f, run_id in figs:
        if not f.ratios:
            continue
        out.append(
            f"| {f.number} | {f.title} | {_fmt(statistics.median(f.a))} | "
            f"{_fmt(statistics.median(f.b))} | **{f.median:.3g}** | "
            f"{min(f.ratios):.3g} - {max(f.ratios):.3g} | {f.target_text} | "
            f"{'yes' if f.met else '**no**'} | `{run_id}` |"
        )
    out += ["", "## Details", ""]
    for f, _ in figs:
        out += [f"### Figure {f.number}", "", f"- A: {f.a_label}", f"- B: {f.b_label}"]
        out.append(f"- unit of A and B: {f.unit}")
        out.append(
            "- rounds (A, B, A/B): "
            + "; ".join(
                f"{_fmt(a)}, {_fmt(b)}, {r:.3g}" for a, b, r in zip(f.a, f.b, f.ratios, strict=True)
            )
        )
        for k, v in f.extra.items():
            if isinstance(v, list):
                out.append(f"- {k}:")
                out += [f"  - {item}" for item in v]
            elif isinstance(v, str) and "\n" in v:  # a block (a fixed-width table)
                out += [f"- {k}:", "", *(f"  {line}" for line in v.splitlines()), ""]
            else:
                out.append(f"- {k}: {v}")
        if f.note:
            out.append(f"- note: {f.note}")
        out.append("")
    for extra in OWN_RESULTS:
        if extra.is_file():
            out += ["#" + extra.read_text().strip(), ""]  # its title, one level down
    if NOTES.is_file():
        out += [NOTES.read_text().strip(), ""]
    return "\n".join(out)
