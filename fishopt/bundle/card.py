"""``MODEL_CARD.md``: a bundle's ``model.json`` written for people."""

from __future__ import annotations

import math
from pathlib import PurePath

from fishopt.stats import with_interval


def _f(v: float | None) -> str:
    return "-" if v is None else f"{v:.4f}"


def _split_text(split: object) -> str:
    if not isinstance(split, dict) or "sizes" not in split:
        return str(split)
    sizes = "/".join(map(str, split["sizes"]))
    fractions = "/".join(f"{f:g}" for f in split.get("fractions", []))
    return f"train/valid/test {sizes} images (fractions {fractions}, seed {split.get('seed')})"


def model_card(meta: dict) -> str:
    src, m, metrics = meta["source"], meta["model"], meta["metrics"]
    pre = meta["preprocessing"]
    hidden = "-".join(map(str, m["hidden"])) or "none"
    lines = [
        f"# Model card: {src['study']} trial {src['trial']}",
        "",
        f"An MLP image classifier ({m['in_features']}-{hidden}-{m['n_classes']}, "
        f"{m['activation']}, dropout {m['dropout']}, batch norm {m['batch_norm']}) chosen by "
        f"fishopt's Optuna study `{src['study']}` as its best trial "
        f"(validation macro-F1 {_f(metrics['valid_f1'])}).",
        "",
        "## Use",
        "",
        "```bash",
        "fishopt predict BUNDLE photo.png     # or: fishopt serve BUNDLE",
        "```",
        "",
        f"Input: any image; it is converted to grayscale, resized to {pre['width']}x"
        f"{pre['height']} ({pre.get('resample', 'bilinear')}), scaled to [0, 1] and flattened "
        f"({m['in_features']} features). Transparent pixels are composited on white.",
        "",
        "Classes, in output order: " + ", ".join(f"`{c}`" for c in meta["classes"]) + ".",
        "",
        "## Where it came from",
        "",
        f"- study `{src['study']}`, trial {src['trial']}, seed {src['seed']}, "
        f"best epoch {src['best_epoch']}",
        "- params: " + ", ".join(f"`{k}={v}`" for k, v in src["params"].items()),
        f"- data: {_data_name(src['data_source'])} "
        f"(fingerprint `{src['data_fingerprint']}`), split {_split_text(src['split'])}",
        f"- weights: {meta['weights_origin']}; sha256 `{meta['weights']['sha256']}`",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()),
        "",
        "## Metrics",
        "",
    ]
    test = metrics.get("test")
    if test is None:
        lines.append("No held-out test split (the study's split has no test part).")
    else:
        lines += [
            f"Held-out test split ({test['n']} images): {held_out_text(test)}.",
            *(["", f"**Warning.** {test['warning']}"] if test.get("warning") else []),
            "",
            "| class | F1 |",
            "|---|---|",
            *(f"| {c} | {_f(v)} |" for c, v in test["per_class_f1"].items()),
            "",
            "Confusion matrix (rows: true class, columns: predicted, in class order):",
            "",
            "```",
            *(" ".join(f"{v:4d}" for v in row) for row in test["confusion"]),
            "```",
        ]
    trial_test = metrics.get("trial_test")
    if meta["weights_origin"] == "retrained" and trial_test:
        lines += [
            "",
            f"Retrained on train+valid for {src['best_epoch']} epochs. The trial as found "
            f"scored test accuracy {_f(trial_test.get('accuracy'))}, macro-F1 "
            f"{_f(trial_test.get('macro_f1'))}.",
        ]
    if meta.get("onnx"):
        o = meta["onnx"]
        lines += [
            "",
            f"`model.onnx` agrees with torch on {o['same_class']}/{o['checked_on']} test images "
            f"(max |logit difference| {o['max_abs_logit_diff']:.2e}).",
        ]
    lines += [
        "",
        "## Limits",
        "",
        "Trained only on the images above; photos unlike them (other species, other "
        "backgrounds) get confident but meaningless answers. Test figures on a small split "
        "are noisy.",
        "",
    ]
    return "\n".join(lines)


def held_out_text(test: dict) -> str:
    """Test accuracy and macro-F1 with their 95% intervals where the bundle has them."""
    acc = with_interval(test["accuracy"], *test.get("accuracy_ci95", (math.nan, math.nan)))
    f1 = with_interval(test["macro_f1"], *test.get("macro_f1_ci95", (math.nan, math.nan)))
    return f"accuracy {acc} (Wilson), macro-F1 {f1} (bootstrap over test images)"


def _data_name(source: str | None) -> str:
    """The data's name without the folders above it: the card is served, and a path on the
    owner's machine is not the reader's business (model.json keeps the whole path)."""
    if not source:
        return "?"
    return PurePath(source).name if "/" in source or "\\" in source else source
