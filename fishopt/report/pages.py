"""What each report page contains, by study kind, and the page comparing several studies."""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Sequence

from optuna.trial import TrialState

from fishopt.report import plots
from fishopt.report.analyses import (
    TUNED,
    analyse_optimizers,
    analyse_tuned,
    best_of,
    by_optimizer,
    config_rows,
    defaults_opening,
    history,
    series,
    tuned_opening,
)
from fishopt.report.doc import Doc, fmt, fmt_p
from fishopt.report.load import StudyData
from fishopt.report.stats import (
    HeldOutFigures,
    from_confusion,
    held_out_figures,
    pareto_front,
    small_test_warning,
    with_interval,
)


def slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "study"
    return "index-study" if s == "index" else s  # index.html is the comparison page


def _ci(iv) -> str:
    if iv.n < 2 or math.isnan(iv.low):
        return "-"
    return f"{iv.low:.3f} – {iv.high:.3f}"


def _held_out(t) -> HeldOutFigures | None:
    """Test figures with intervals, from the trial's test confusion matrix (None without one:
    trials from before fishopt stored it carry only the bare numbers)."""
    cm = t.user_attrs.get("test_confusion")
    if not cm:
        return None
    true, pred = from_confusion(cm)
    return held_out_figures(true, pred, len(cm))


def _test_f1(t) -> str:
    """A table cell: test macro-F1 of one trial with its 95% bootstrap interval."""
    if t is None:
        return "-"
    fig = _held_out(t)
    if fig is None:
        return fmt(t.user_attrs.get("test_f1", math.nan))
    return f"{fig.macro_f1:.3f} ({fig.f1_low:.3f}–{fig.f1_high:.3f})"


def _params(params: dict) -> str:
    return ", ".join(
        f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())
    )


# ------------------------------------------------------------------------------ header


def _header(doc: Doc, s: StudyData) -> None:
    spec = s.spec
    doc.heading(f"Study {s.name} ({s.kind})", 1)
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
    doc.para(defaults_opening(a), cls="opening")
    doc.para(
        "Validation macro-F1 is each trial's best epoch; mean and 95% confidence interval "
        "(percentile bootstrap, so it stays within the values seen) are over repeats with "
        "different seeds. Test F1 carries a 95% bootstrap interval over test images. "
        "Gap = train minus validation "
        "accuracy at the last epoch (overfitting). Epochs to 90% = first epoch whose validation "
        "F1 reaches 90% of the trial's own best (speed of convergence). p = Welch t-test of the "
        "best optimizer against each other one, Holm-corrected for the number of comparisons."
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
                _ci(r.f1),
                _test_f1(best_of(groups[r.optimizer])),
                r.gap,
                fmt(r.epochs_to_90, 1),
                fmt(r.epoch_seconds * 1000, 1),
                fmt_p(c.p) if c else "best",
                fmt_p(c.p_holm) if c else "best",
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
            "p vs best",
            "p (Holm)",
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
        "Validation macro-F1 per optimizer: mean and 95% bootstrap CI over repeats",
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


# -------------------------------------------------------------------- tuned optimizers


def defaults_for(tuned: StudyData, studies: Sequence[StudyData]) -> StudyData | None:
    """The optimizers-at-defaults study to set beside a tuned one: same data if there is one."""
    plain = [s for s in studies if s.kind == "optimizers"]
    fp = tuned.identity.get("data_fingerprint")
    same = [s for s in plain if s.identity.get("data_fingerprint") == fp]
    return (same or plain or [None])[0]


def _tuned(doc: Doc, s: StudyData, studies: Sequence[StudyData] = ()) -> None:
    tuned_section(doc, s, defaults_for(s, studies))


def tuned_section(doc: Doc, s: StudyData, d: StudyData | None) -> None:
    """Defaults beside tuned: the opening paragraph, the table, the tests and the figures."""
    a = analyse_tuned(s.trials, s.spec, d.complete if d else None)
    doc.heading(f"Optimizers tuned ({s.name})", 2, f"tuned-{slug(s.name)}")
    doc.para(tuned_opening(a), cls="opening")
    if d is None:
        doc.para(
            "No optimizers study at defaults is in this report: give its name too "
            "(fishopt report optimizers " + s.name + ") to see what tuning bought."
        )
    elif d.identity.get("data_fingerprint") != s.identity.get("data_fingerprint"):
        doc.para(
            f"Warning: {d.name} and {s.name} ran on different data; gains are not comparable.",
            cls="nosig",
        )
    if a.missing:
        doc.heading("Not finished yet", 3)
        doc.bullets([(m, "nosig") for m in a.missing])
    doc.para(
        "Tuned F1 is the mean over the confirm runs (the best search setting re-run with "
        "fresh seeds, the same seeds for every optimizer), so it is not inflated by picking "
        "the luckiest search trial. Intervals are 95% percentile bootstrap over seeds; gain = "
        "tuned minus defaults mean; rank 1 = best mean. p = Welch t-test of the tuned best "
        "against each other optimizer, Holm-corrected."
    )
    cmp = {c.other: c for c in a.comparisons}
    doc.table(
        [
            "optimizer",
            "defaults F1",
            "95% CI",
            "tuned F1",
            "95% CI",
            "gain",
            "rank at defaults",
            "rank tuned",
            "search trials",
            "confirm runs",
            "p vs tuned best (Holm)",
        ],
        [
            [
                r.optimizer,
                r.defaults.mean if r.defaults else math.nan,
                _ci(r.defaults) if r.defaults else "-",
                r.tuned.mean,
                _ci(r.tuned),
                fmt(r.gain) if math.isnan(r.gain) else f"{r.gain:+.3f}",
                r.rank_default or "-",
                r.rank_tuned or "-",
                f"{r.search_done} / {a.trials_per_optimizer}",
                f"{len(r.confirm)} / {a.confirm_seeds}",
                fmt_p(cmp[r.optimizer].p_holm) if r.optimizer in cmp else "-",
            ]
            for r in a.rows
        ],
        cls="tuned",
    )
    doc.heading("Best settings found", 3)
    doc.table(
        ["optimizer", "search trial", "best search F1", "parameters"],
        [
            [
                r.optimizer,
                r.best_trial if r.best_trial is not None else "-",
                max(r.search_values) if r.search_values else math.nan,
                _params(r.best_params) or "-",
            ]
            for r in a.rows
        ],
        cls="settings",
    )
    edges = [(f"{r.optimizer}: {e}; widen the range", "nosig") for r in a.rows for e in r.edges]
    if edges:
        doc.heading("Best values at the edge of their range", 3)
        doc.bullets(edges)
    if a.comparisons:
        doc.heading(f"Is {a.tuned_best} really better once tuned?", 3)
        doc.bullets([(c.verdict, "sig" if c.significant else "nosig") for c in a.comparisons])
    if a.probabilities:
        doc.heading(f"P({a.tuned_best} > other)", 3)
        doc.para(
            "How often the tuned best beats each other optimizer on the same seed "
            "(Bouthillier et al. 2021), with a 95% percentile bootstrap interval over seeds. "
            "With a handful of seeds the interval is too narrow to be a test; the verdicts "
            "above decide."
        )
        doc.table(
            ["other", "seeds", f"P({a.tuned_best} > other)", "95% CI"],
            [
                [o, pr.n, pr.p, "-" if math.isnan(pr.low) else f"{pr.low:.2f} – {pr.high:.2f}"]
                for o, pr in a.probabilities
            ],
            cls="prob",
        )
    f = a.friedman
    doc.heading("All optimizers at once: Friedman test over seeds", 3)
    if f is None:
        doc.para(
            "Not testable yet: it needs at least 3 optimizers with confirm runs on at least "
            "2 common seeds."
        )
    else:
        doc.para(
            f"Friedman chi-square = {f.statistic:.2f} over {f.blocks} seeds, p = {fmt_p(f.p)}: "
            + (
                "the optimizers' ranks differ more than chance would make them."
                if f.significant
                else "the ranks could be chance; the data cannot order these optimizers."
            )
            + f" Nemenyi critical difference of average ranks: {f.cd:.2f}."
        )
        doc.figure(
            f"cd-{slug(s.name)}",
            plots.cd_diagram(f),
            f"Critical-difference diagram: average rank over {f.blocks} seeds (1 = best); "
            "optimizers joined by a bar are not separated by the Nemenyi test",
        )
    doc.figure(
        f"budget-{slug(s.name)}",
        plots.budget_curves(a.budget) if a.budget else None,
        "Budget curve: expected best validation F1 after k search trials, per optimizer "
        "(Dodge et al. 2019; k trials drawn without replacement from the search, ± sd)",
    )


# ------------------------------------------------------------------- widths and depth


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
            "test F1 (best)",
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
                r.f1.sd,
                _ci(r.f1),
                r.test_f1,
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


def _widths(doc: Doc, s: StudyData, studies: Sequence[StudyData] = ()) -> None:
    rows = config_rows(s.complete)
    doc.heading("Width", 2, "widths")
    if not rows:
        doc.para("No finished trials yet.")
        return
    _config_table(doc, rows)
    groups = series(
        rows, lambda r: f"{r.n_layers} layer{'s' if r.n_layers != 1 else ''}, {r.pattern}"
    )
    doc.figure(
        "f1-width",
        plots.f1_vs_width(groups),
        "Validation macro-F1 against first-layer width (log scale), mean ± sd over repeats",
    )
    doc.figure(
        "cost",
        plots.cost(rows),
        "Cost against F1: time per epoch and parameter count, with the Pareto front",
    )
    _pareto_text(doc, rows)


def _depth(doc: Doc, s: StudyData, studies: Sequence[StudyData] = ()) -> None:
    rows = config_rows(s.complete)
    doc.heading("Depth", 2, "depth")
    if not rows:
        doc.para("No finished trials yet.")
        return
    _config_table(doc, rows)
    doc.figure(
        "f1-depth",
        plots.f1_vs_depth(rows),
        "Validation macro-F1 against the number of hidden layers, mean ± sd over repeats",
    )
    doc.figure(
        "cost",
        plots.cost(rows),
        "Cost against F1: time per epoch and parameter count, with the Pareto front",
    )
    _pareto_text(doc, rows)


# -------------------------------------------------------------------------- any study


def _general(doc: Doc, s: StudyData) -> None:
    doc.heading("Search", 2, "search")
    best = best_of(s.complete)
    if best is None:
        doc.para("No finished trials yet.")
        return
    doc.heading(f"Best trial: #{best.number}", 3)
    held = _held_out(best)
    if held is not None:
        test_rows = [
            ("test accuracy (Wilson 95% CI)", with_interval(*_acc(held))),
            ("test macro-F1 (bootstrap 95% CI)", with_interval(*_f1(held))),
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
        [[t.number, t.value, _test_f1(t), _params(t.params)] for t in top],
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


def _acc(h: HeldOutFigures) -> tuple[float, float, float]:
    return h.accuracy, h.accuracy_low, h.accuracy_high


def _f1(h: HeldOutFigures) -> tuple[float, float, float]:
    return h.macro_f1, h.f1_low, h.f1_high


def _by_optimizer(s: StudyData) -> dict[str, list]:
    return by_optimizer(s.complete, s.spec)


KIND_SECTIONS = {
    "optimizers": _optimizers,
    TUNED: _tuned,
    "widths": _widths,
    "depth": _depth,
}


def study_page(s: StudyData, studies: Sequence[StudyData] = ()) -> Doc:
    """``studies``: the others in the same report (a tuned study finds its defaults there)."""
    doc = Doc(f"fishopt report: {s.name}", slug(s.name))
    doc.raw_html('<nav><a href="index.html">all studies</a></nav>')
    _header(doc, s)
    kind = s.kind
    if kind == "custom" and set(s.spec.get("space", {})) == {"optimizer"}:
        kind = "optimizers"  # a custom spec that only varies the optimizer is that comparison
    section = KIND_SECTIONS.get(kind)
    if section is not None:
        section(doc, s, studies)
    _general(doc, s)
    return doc


# -------------------------------------------------------------------------- comparison


def finding(s: StudyData) -> str:
    """One sentence per study for the comparison page and the summary."""
    if not s.complete:
        return "no finished trials yet"
    if s.kind == "optimizers":
        a = analyse_optimizers(s.complete, s.spec)
        sig = [c.other for c in a.comparisons if c.significant]
        same = [c.other for c in a.comparisons if not c.significant and not math.isnan(c.p_holm)]
        untested = [c.other for c in a.comparisons if math.isnan(c.p_holm)]
        text = f"best mean F1: {a.best} ({a.rows[0].f1.mean:.3f})"
        if sig:
            text += f"; significantly better than {', '.join(sig)}"
        if same:
            text += f"; the data cannot separate it from {', '.join(same)}"
        if untested:
            text += f"; too few repeats to test against {', '.join(untested)}"
        return text
    if s.kind == TUNED:
        a = analyse_tuned(s.trials, s.spec)
        best = a.tuned_best
        if best is None:
            return "no finished confirm runs yet"
        text = f"best tuned: {best} ({a.rows[0].tuned.mean:.3f} over {a.rows[0].tuned.n} seeds)"
        if a.comparisons:
            c = a.comparisons[0]
            text += "; " + ("separated from" if c.significant else "cannot be told from")
            text += f" {c.other} (Holm p = {fmt_p(c.p_holm)})"
        return text + (f"; {len(a.missing)} thing(s) unfinished" if a.missing else "")
    if s.kind in ("widths", "depth"):
        rows = config_rows(s.complete)
        top = max(rows, key=lambda r: r.f1.mean)
        return f"best mean F1: hidden {top.label} ({top.f1.mean:.3f}, {top.n_params:,} params)"
    best = best_of(s.complete)
    return f"best trial #{best.number}: F1 {best.value:.3f} ({_params(best.params)})"


def comparison_page(studies: Sequence[StudyData]) -> Doc:
    doc = Doc("fishopt report", "index")
    doc.heading("fishopt report", 1)
    doc.para(
        f"{len(studies)} stud{'y' if len(studies) == 1 else 'ies'}. Each has its own page with "
        "its tables and plots; this page compares them."
    )
    doc.raw_html(
        "<nav>" + "".join(f'<a href="{slug(s.name)}.html">{s.name}</a>' for s in studies) + "</nav>"
    )
    rows = []
    for s in studies:
        best = best_of(s.complete)
        secs = [t.user_attrs.get("epoch_seconds") for t in s.complete]
        secs = [x for x in secs if x is not None]
        rows.append(
            [
                s.name,
                s.kind,
                s.count(TrialState.COMPLETE),
                s.count(TrialState.PRUNED),
                s.count(TrialState.FAIL),
                best.value if best else math.nan,
                _test_f1(best),
                fmt(statistics.fmean(secs) * 1000, 1) if secs else "-",
                s.identity.get("data_fingerprint", "-"),
            ]
        )
    doc.heading("Studies side by side", 2, "comparison")
    doc.table(
        [
            "study",
            "kind",
            "complete",
            "pruned",
            "failed",
            "best valid F1",
            "test F1 (best, 95% CI)",
            "ms / epoch",
            "data",
        ],
        rows,
        cls="comparison",
    )
    fingerprints = {s.identity.get("data_fingerprint") for s in studies}
    if len(fingerprints) > 1:
        doc.para(
            "Warning: these studies were run on different data (see the data column); "
            "their F1 values are not directly comparable.",
            cls="nosig",
        )
    for tuned in (s for s in studies if s.kind == TUNED):
        tuned_section(doc, tuned, defaults_for(tuned, studies))
    doc.heading("Findings", 2)
    doc.bullets([(f"{s.name}: {finding(s)}", None) for s in studies])
    for s in studies:
        if s.spec.get("question"):
            doc.para(f"{s.name} asks: {s.spec['question']}")
    doc.figure(
        "spread",
        plots.study_spread(
            [s.name for s in studies], [[t.value for t in s.complete] for s in studies]
        ),
        "Validation macro-F1 of every finished trial, per study",
    )
    return doc
