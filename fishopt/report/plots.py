"""Report figures: matplotlib, rendered to PNG bytes so pages embed them and need no network.

Figures are built on ``matplotlib.figure.Figure`` (no pyplot state, no display); Optuna's own
matplotlib visualizations are used for history, importances and parallel coordinates, and are
closed after rendering. Every axis is labelled; colours come from a qualitative palette with
markers too, so lines stay apart in grayscale print.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Callable, Sequence

import matplotlib
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from fishopt.report.analyses import (
    ConfigRow,
    Curve,
    OptimizerAnalysis,
    change_per_epoch,
    history,
)
from fishopt.stats import pareto_front

STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "legend.fontsize": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
}
MARKERS = "os^vD<>phX*P"


def _color(i: int) -> tuple:
    return matplotlib.colormaps["tab10" if i < 10 else "tab20b"](i % 10 if i < 10 else i % 20)


def png(fig: Figure, tight: bool = False) -> bytes:
    """PNG bytes; our figures use constrained layout, so only pyplot ones need a tight bbox
    (which costs a second full draw)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight" if tight else None)
    return buf.getvalue()


def _figure(ncols: int = 1, width: float = 6.4, height: float = 4.2) -> tuple[Figure, list]:
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=(width * ncols, height), layout="constrained")
        axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def render(build: Callable[[], Figure]) -> bytes:
    with matplotlib.rc_context(STYLE):
        return png(build())


# --------------------------------------------------------------------------- optimizers


def _lines(ax, curves: dict[str, Curve], ylabel: str, title: str) -> None:
    for i, (name, c) in enumerate(curves.items()):
        ax.plot(
            c.epochs, c.mean, marker=MARKERS[i % len(MARKERS)], ms=4, color=_color(i), label=name
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def optimizer_curves(a: OptimizerAnalysis) -> bytes:
    def build() -> Figure:
        fig, (left, right) = _figure(2, height=4.6)
        order = [r.optimizer for r in a.rows]
        _lines(
            left,
            {n: a.curves[n]["train_acc"] for n in order},
            "train accuracy",
            "Training accuracy per epoch (mean over repeats)",
        )
        _lines(
            right,
            {n: a.curves[n]["valid_acc"] for n in order},
            "validation accuracy",
            "Validation accuracy per epoch (mean over repeats)",
        )
        right.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title="optimizer")
        return fig

    return render(build)


def optimizer_changes(a: OptimizerAnalysis) -> bytes:
    def build() -> Figure:
        fig, (left, right) = _figure(2, height=4.6)
        order = [r.optimizer for r in a.rows]
        for ax, metric, what in (
            (left, "train_acc", "training"),
            (right, "valid_acc", "validation"),
        ):
            _lines(
                ax,
                {n: change_per_epoch(a.curves[n][metric]) for n in order},
                f"change in {what} accuracy",
                f"Per-epoch change in {what} accuracy",
            )
            ax.axhline(0, color="black", lw=0.8)
        right.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title="optimizer")
        return fig

    return render(build)


def optimizer_f1(a: OptimizerAnalysis) -> bytes:
    def build() -> Figure:
        fig, (ax,) = _figure(1, width=7.5, height=0.45 * len(a.rows) + 1.5)
        rows = list(reversed(a.rows))
        ys = range(len(rows))
        means = [r.f1.mean for r in rows]
        lo = [r.f1.mean - r.f1.low if math.isfinite(r.f1.low) else 0 for r in rows]
        hi = [r.f1.high - r.f1.mean if math.isfinite(r.f1.high) else 0 for r in rows]
        ax.errorbar(
            means, ys, xerr=[lo, hi], fmt="o", color="tab:blue", capsize=4, label="mean with 95% CI"
        )
        rx = [v for r in rows for v in r.values]
        ry = [y for y, r in zip(ys, rows, strict=True) for _ in r.values]
        ax.scatter(rx, [y + 0.18 for y in ry], s=14, color="tab:gray", label="each repeat")
        ax.set_yticks(list(ys), [r.optimizer for r in rows])
        ax.set_xlabel("validation macro-F1 (best epoch)")
        ax.set_ylabel("optimizer")
        ax.set_title("Validation macro-F1 per optimizer over repeats")
        ax.legend(loc="lower right")
        return fig

    return render(build)


# ------------------------------------------------------------------- widths and depth


def _errorbars(
    ax, rows: Sequence[ConfigRow], x: Callable[[ConfigRow], float], i: int, label: str
) -> None:
    xs = [x(r) for r in rows]
    ys = [r.f1.mean for r in rows]
    sd = [r.f1.sd if math.isfinite(r.f1.sd) else 0 for r in rows]
    ax.errorbar(
        xs, ys, yerr=sd, marker=MARKERS[i % len(MARKERS)], color=_color(i), capsize=4, label=label
    )


def f1_vs_width(groups: dict[str, list[ConfigRow]]) -> bytes:
    def build() -> Figure:
        fig, (ax,) = _figure(1, width=7.5, height=4.6)
        for i, (name, rows) in enumerate(groups.items()):
            _errorbars(
                ax, sorted(rows, key=lambda r: r.first_width), lambda r: r.first_width, i, name
            )
        ax.set_xscale("log", base=2)
        ax.set_xlabel("units in the first hidden layer (log scale)")
        ax.set_ylabel("validation macro-F1 (mean ± sd over repeats)")
        ax.set_title("F1 against width")
        ax.legend(title="layers, pattern")
        return fig

    return render(build)


def f1_vs_depth(rows: Sequence[ConfigRow]) -> bytes:
    def build() -> Figure:
        fig, (ax,) = _figure(1, width=7.0, height=4.4)
        _errorbars(
            ax,
            sorted(rows, key=lambda r: r.n_layers),
            lambda r: r.n_layers,
            0,
            "mean ± sd over repeats",
        )
        ax.set_xticks(sorted({r.n_layers for r in rows}))
        ax.set_xlabel("hidden layers")
        ax.set_ylabel("validation macro-F1")
        ax.set_title("F1 against depth")
        ax.legend()
        return fig

    return render(build)


def cost(rows: Sequence[ConfigRow]) -> bytes:
    """F1 against time per epoch and against parameter count, with the Pareto front."""

    def build() -> Figure:
        fig, (left, right) = _figure(2, height=4.6)
        ys = [r.f1.mean for r in rows]
        left.scatter([r.epoch_seconds * 1000 for r in rows], ys, color="tab:blue")
        left.set_xlabel("time per epoch (ms)")
        left.set_ylabel("validation macro-F1 (mean over repeats)")
        left.set_title("F1 against training time")
        params = [max(r.n_params, 1) for r in rows]
        right.scatter(params, ys, color="tab:gray", label="configuration")
        front = sorted(pareto_front(list(zip(params, ys, strict=True))), key=lambda i: params[i])
        right.plot(
            [params[i] for i in front],
            [ys[i] for i in front],
            "o-",
            color="tab:red",
            label="Pareto front",
        )
        for i in front:
            right.annotate(
                rows[i].label,
                (params[i], ys[i]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=8,
            )
        right.set_xscale("log")
        right.set_xlabel("parameters (log scale)")
        right.set_ylabel("validation macro-F1 (mean over repeats)")
        right.set_title("F1 against model size")
        right.legend(loc="lower right")
        return fig

    return render(build)


# -------------------------------------------------------------------------- any study


def trial_curves(t) -> bytes:
    def build() -> Figure:
        fig, axes = _figure(3, width=4.6, height=3.6)
        h = history(t)
        epochs = [r["epoch"] for r in h]
        for ax, metric, label in zip(
            axes, ("loss", "acc", "f1"), ("cross-entropy loss", "accuracy", "macro-F1"), strict=True
        ):
            ax.plot(epochs, [r[f"train_{metric}"] for r in h], "o-", label="train")
            ax.plot(epochs, [r[f"valid_{metric}"] for r in h], "s-", label="valid")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.set_title(f"trial {t.number}: {label}")
            ax.legend()
        return fig

    return render(build)


def optuna_plot(kind: str, study) -> bytes | None:
    """Optuna's own matplotlib plots; None when the study cannot support the plot yet."""
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as ovm

    plot = {
        "history": ovm.plot_optimization_history,
        "importances": ovm.plot_param_importances,
        "parallel": ovm.plot_parallel_coordinate,
    }[kind]
    with matplotlib.rc_context(STYLE), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ax = plot(study, target_name="validation macro-F1")
        except (ValueError, RuntimeError, ZeroDivisionError):
            return None
        fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
        if kind == "parallel":
            fig.set_size_inches(max(8, 1.6 * len(study.best_params) + 4), 4.8)
        try:
            return png(fig, tight=True)
        finally:
            plt.close(fig)


def study_spread(names: Sequence[str], values: Sequence[Sequence[float]]) -> bytes:
    def build() -> Figure:
        fig, (ax,) = _figure(1, width=max(6.0, 1.6 * len(names)), height=4.4)
        ax.boxplot([list(v) or [math.nan] for v in values], tick_labels=list(names))
        ax.set_xlabel("study")
        ax.set_ylabel("validation macro-F1 of finished trials")
        ax.set_title("Trials per study")
        return fig

    return render(build)


# ------------------------------------------------------------------------ tuned optimizers


def budget_curves(budget: dict[str, list[tuple[int, float, float]]]) -> bytes:
    """Expected best validation F1 after k search trials, per optimizer (Dodge et al. 2019)."""

    def build() -> Figure:
        fig, (ax,) = _figure(1, width=7.5, height=4.6)
        for i, (name, curve) in enumerate(budget.items()):
            ks = [k for k, _, _ in curve]
            mean = [m for _, m, _ in curve]
            ax.plot(ks, mean, marker=MARKERS[i % len(MARKERS)], color=_color(i), label=name)
            ax.fill_between(
                ks,
                [m - s for _, m, s in curve],
                [min(1.0, m + s) for _, m, s in curve],
                color=_color(i),
                alpha=0.12,
            )
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("search trials k")
        ax.set_ylabel("expected best validation macro-F1")
        ax.set_title("What a search budget buys (expected best of k trials, ± sd)")
        ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), title="optimizer")
        return fig

    return render(build)
