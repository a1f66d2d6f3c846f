"""What each study's report page contains, by study kind."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Sequence

from optuna.trial import TrialState

from fishopt.replay.outlook import more_trials
from fishopt.report import plots
from fishopt.report.analyses import (
    analyse_optimizers,
    best_of,
    by_optimizer,
    config_rows,
    history,
    series,
)
from fishopt.report.answers import answer
from fishopt.report.cells import acc_of, ci, f1_of, held_out, params_text, slug, test_f1_cell
from fishopt.report.doc import Doc, fmt, fmt_p
from fishopt.report.load import StudyData
from fishopt.report.page_tuned import defaults_for, tuned_section
from fishopt.report.tuned import TUNED
from fishopt.stats import (
    pareto_front,
    small_test_warning,
    with_interval,
)

# ------------------------------------------------------------------------------ header


def _header(doc: Doc, s: StudyData) -> None:
    spec = s.spec
    if spec.get("question"):
        doc.para(f"Question: {spec['question']}")
    if spec.get("description"):
        doc.para(spec["description"])
    ident = s.identity
    split = ident.get("split", {})
    rows = [
        (
            "data",
            f"{ident.get('data_source', '?')} (fingerprint {ident.get('data_fingerprint', '?')})",
        ),
        ("classes", f"{len(ident.get('classes', []))}: {', '.join(ident.get('classes', []))}"),
        ("preprocessing", json.dumps(ident.get("preprocessing", {}), sort_keys=True)),
        ("split train/valid/test", "/".join(map(str, split.get("sizes", []))) or "?"),
        (
            "epochs, repeats, seed",
            f"{spec.get('epochs')}, {spec.get('repeats')}, {spec.get('seed')}",
        ),
        (
            "sampler, pruner",
            f"{spec.get('sampler', {}).get('name')}, {spec.get('pruner', {}).get('name')}",
        ),
        ("precision", s.precision),
        ("fixed", json.dumps(spec.get("fixed", {}), sort_keys=True)),
        ("searched", json.dumps(spec.get("space", {}), sort_keys=True)),
        (
            "trials",
            f"{len(s.trials)}: {s.count(TrialState.COMPLETE)} complete, "
            f"{s.count(TrialState.PRUNED)} pruned, {s.count(TrialState.FAIL)} failed, "
            f"{s.count(TrialState.RUNNING)} running",
        ),
    ]
    if not s.identity:
        rows = rows[-1:]
        doc.para("This study was not created by fishopt; only generic analyses apply.")
    doc.table(["", "value"], rows, cls="about")
    sizes = split.get("sizes", [])
    if len(sizes) == 3 and (warning := small_test_warning(int(sizes[2]))):
        doc.para(f"Warning: {warning}", cls="nosig")


# -------------------------------------------------------------------------- optimizers


def _optimizers(doc: Doc, s: StudyData, studies: Sequence[StudyData] = ()) -> None:
    a = analyse_optimizers(s.complete, s.spec)
    doc.heading("Optimizers", 2, "optimizers")
    doc.para(
        "Validation macro-F1 is each trial's best epoch; its mean and 95% confidence interval "
        "(Student t, shown from 3 seeds on) are over repeats with different seeds. Test F1 "
        "carries a 95% interval over test images (resampled within each class). Gap = train "
        "minus validation accuracy at the last epoch (overfitting). Epochs to 90% = first "
        "epoch whose validation F1 reaches 90% of the trial's own best (speed of convergence). "
        "p = the family-wise adjusted p-value of the winner against each other optimizer, from "
        "one all-pairs rank test over the whole table (its rate of false 'beats' claims was "
        "measured at 5% or less: bench/RESULTS.md, calibration)."
    )
    cmp = {c.other: c for c in a.comparisons}
    groups = _by_optimizer(s)
    rows = []
    for r in a.rows:
        c = cmp.get(r.optimizer)
        rows.append(
            [
                r.optimizer,
                r.trials,
                r.best,
                r.f1.mean,
                ci(r.f1),
                test_f1_cell(best_of(groups[r.optimizer])),
                r.gap,
                fmt(r.epochs_to_90, 1),
                fmt(r.epoch_seconds * 1000, 1),
                fmt_p(c.p) if c else "best",
            ]
        )
    doc.table(
        [
            "optimizer",
            "trials",
            "best F1",
            "mean F1",
            "95% CI",
            "test F1 (best trial, 95% CI)",
            "train-valid gap",
            "epochs to 90%",
            "ms / epoch",
            "p vs best (family-wise)",
        ],
        rows,
        cls="optimizers",
    )
    if a.comparisons:
        doc.heading(f"Is {a.best} really better?", 3)
        doc.bullets([(c.verdict, "sig" if c.significant else "nosig") for c in a.comparisons])
    doc.figure(
        "optimizer-f1",
        plots.optimizer_f1(a) if a.rows else None,
        "Validation macro-F1 per optimizer: mean and 95% t interval over repeats",
    )
    if any(c.epochs for m in a.curves.values() for c in m.values()):
        doc.figure(
            "optimizer-curves",
            plots.optimizer_curves(a),
            "Train and validation accuracy per epoch for each optimizer",
        )
        doc.figure(
            "optimizer-changes",
            plots.optimizer_changes(a),
            "Per-epoch change in train and validation accuracy for each optimizer",
        )


def _config_table(doc: Doc, rows) -> None:
    doc.table(
        [
            "hidden",
            "layers",
            "pattern",
            "parameters",
            "trials",
            "mean F1",
            "± sd",
            "95% CI",
            "test F1 (best repeat, 95% CI)",
            "ms / epoch",
        ],
        [
            [
                r.label,
                r.n_layers,
                r.pattern,
                r.n_params,
                r.trials,
                r.f1.mean,
                r.f1.sd if r.trials > 1 else "-",
                ci(r.f1),
                test_f1_cell(r.best),
                fmt(r.epoch_seconds * 1000, 1),
            ]
            for r in rows
        ],
        cls="configs",
    )


def _pareto_text(doc: Doc, rows) -> None:
    front = pareto_front([(r.n_params, r.f1.mean) for r in rows])
    names = [
        f"{rows[i].label} ({rows[i].n_params:,} params, F1 {rows[i].f1.mean:.3f})"
        for i in sorted(front, key=lambda i: rows[i].n_params)
    ]
    doc.para(
        "Pareto front (no other configuration is both smaller and better): " + "; ".join(names)
    )


def _configurations(doc: Doc, s: StudyData, what: str) -> None:
    """The widths or depth section: the table, F1 against size, cost and the Pareto front."""
    rows = config_rows(s.complete)
    doc.heading(what.capitalize(), 2, what)
    if not rows:
        doc.para("No finished trials yet.")
        return
    _config_table(doc, rows)
    if what == "widths":
        groups = series(
            rows, lambda r: f"{r.n_layers} layer{'s' if r.n_layers != 1 else ''}, {r.pattern}"
        )
        figure = plots.f1_vs_width(groups)
        caption = "Validation macro-F1 against first-layer width (log scale)"
    else:
        figure = plots.f1_vs_depth(rows)
        caption = "Validation macro-F1 against the number of hidden layers"
    doc.figure(
        "f1-width" if what == "widths" else "f1-depth", figure, caption + ", mean ± sd over repeats"
    )
    doc.figure(
        "cost",
        plots.cost(rows),
        "Cost against F1: time per epoch and parameter count, with the Pareto front",
    )
    _pareto_text(doc, rows)


def _widths(doc: Doc, s: StudyData, studies: Sequence[StudyData] = ()) -> None:
    _configurations(doc, s, "widths")


def _depth(doc: Doc, s: StudyData, studies: Sequence[StudyData] = ()) -> None:
    _configurations(doc, s, "depth")


# -------------------------------------------------------------------------- any study


def _general(doc: Doc, s: StudyData) -> None:
    doc.heading("Search", 2, "search")
    best = best_of(s.complete)
    if best is None:
        doc.para("No finished trials yet.")
        return
    doc.heading(f"Best trial: #{best.number}", 3)
    held = held_out(best)
    if held is not None:
        test_rows = [
            ("test accuracy (exact binomial 95% CI)", with_interval(*acc_of(held))),
            ("test macro-F1 (95% CI, resampled within classes)", with_interval(*f1_of(held))),
            ("test images", held.n),
        ]
    else:
        test_rows = [
            ("test accuracy", best.user_attrs.get("test_acc", math.nan)),
            ("test macro-F1 (no interval: the trial stored no test confusion matrix)",
             best.user_attrs.get("test_f1", math.nan)),
        ]  # fmt: skip
    doc.table(
        ["", "value"],
        [
            ("validation macro-F1", best.value),
            *test_rows,
            (
                "best epoch / epochs run",
                f"{best.user_attrs.get('best_epoch', '?')} / "
                f"{best.user_attrs.get('epochs_run', '?')}",
            ),
            ("hidden", "-".join(map(str, best.user_attrs.get("hidden", []))) or "none"),
            ("parameters", best.user_attrs.get("n_params", "?")),
            ("seed", best.user_attrs.get("seed", "?")),
            *[(k, v) for k, v in sorted(best.params.items())],
        ],
        cls="best",
    )
    if held is not None and held.warning:
        doc.para(f"Warning: {held.warning}", cls="nosig")
    if history(best):
        doc.figure(
            "best-curves",
            plots.trial_curves(best),
            f"Trial {best.number}: train and validation loss, accuracy and F1 per epoch",
        )
    top = sorted(s.complete, key=lambda t: (-t.value, t.number))[:10]
    doc.heading("Top trials", 3)
    doc.table(
        ["trial", "valid F1", "test F1 (95% CI)", "params"],
        [[t.number, t.value, test_f1_cell(t), params_text(t.params)] for t in top],
        cls="top",
    )
    doc.figure(
        "history",
        plots.optuna_plot("history", s.study),
        "Optimization history: each trial's value and the best so far",
    )
    doc.figure(
        "importances",
        plots.optuna_plot("importances", s.study),
        "Parameter importances (Optuna's default evaluator)",
    )
    doc.figure(
        "parallel",
        plots.optuna_plot("parallel", s.study),
        "Parallel coordinates: parameters of every finished trial, coloured by value",
    )


def _by_optimizer(s: StudyData) -> dict[str, list]:
    return by_optimizer(s.complete, s.spec)


def _tuned(doc: Doc, s: StudyData, studies: Sequence[StudyData] = ()) -> None:
    tuned_section(doc, s, defaults_for(s, studies))


KIND_SECTIONS = {
    "optimizers": _optimizers,
    TUNED: _tuned,
    "widths": _widths,
    "depth": _depth,
}


def study_page(s: StudyData, studies: Sequence[StudyData] = ()) -> Doc:
    """``studies``: the others in the same report (a tuned study finds its defaults there).
    The tuned section is on the HTML page only: summary.md has it from the comparison. One
    page, both forms: its figures are the report's costliest part, drawn once."""
    doc = Doc(f"fishopt report: {s.name}", slug(s.name))
    doc.raw_html('<nav><a href="index.html">all studies</a></nav>')
    doc.heading(f"Study {s.name} ({s.kind})", 1)
    doc.para(answer(s, studies), cls="answer")
    _header(doc, s)
    kind = s.kind
    if kind == "custom" and set(s.spec.get("space", {})) == {"optimizer"}:
        kind = "optimizers"  # a custom spec that only varies the optimizer is that comparison
    section = KIND_SECTIONS.get(kind)
    if section is not None:
        with doc.html_only() if kind == TUNED else contextlib.nullcontext():
            section(doc, s, studies)
    sampler = s.spec.get("sampler", {}).get("name", "grid")
    if kind == "full" or (kind == "custom" and sampler != "grid"):
        # A search tried each configuration once: was it enough?
        outlook = more_trials(s.trials)
        doc.heading("Was it enough?", 2, "enough")
        doc.para(outlook.sentence[0].upper() + outlook.sentence[1:] + ".")
    _general(doc, s)
    return doc
