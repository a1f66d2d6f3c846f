"""Dashboard notes: what a study asks and ran on, and each trial's per-epoch curves.

optuna-dashboard shows a study's note on the study page and a trial's note beside the trial,
rendered as Markdown. Notes live in the study's system attributes, so they can be written for
finished trials too (a finished trial's own attributes are read-only).
"""

from __future__ import annotations

import json

import optuna
from optuna.trial import FrozenTrial

from fishopt.storage import fence


def study_note(name: str, identity: dict) -> str:
    spec = identity.get("spec", {})
    split = identity.get("split", {})
    classes = identity.get("classes", [])
    sizes = split.get("sizes", [])
    lines = [
        f"## {name} ({spec.get('kind', 'custom')})",
        "",
        f"**Question.** {spec.get('question') or '(none given)'}",
        "",
        spec.get("description", ""),
        "",
        f"- **Data:** {identity.get('data_source', '?')} "
        f"(fingerprint `{identity.get('data_fingerprint', '?')}`), "
        f"{len(classes)} classes: {', '.join(classes)}",
        f"- **Preprocessing:** `{json.dumps(identity.get('preprocessing', {}), sort_keys=True)}`,"
        f" {identity.get('in_features', '?')} input features",
        f"- **Split:** fractions {split.get('fractions', '?')} (seed {split.get('seed', '?')}),"
        f" sizes train/valid/test {'/'.join(map(str, sizes)) or '?'}",
        f"- **Training:** {spec.get('epochs', '?')} epochs, {spec.get('repeats', '?')} "
        f"repeat(s) with different seeds, study seed {spec.get('seed', '?')}",
        f"- **Sampler / pruner:** {spec.get('sampler', {}).get('name', '?')} / "
        f"{spec.get('pruner', {}).get('name', '?')}",
        f"- **Fixed:** `{json.dumps(spec.get('fixed', {}), sort_keys=True)}`",
        f"- **Searched:** `{json.dumps(spec.get('space', {}), sort_keys=True)}`",
        "",
        "**Reading the dashboard.** A trial's value is the validation macro-F1 of its best "
        "epoch; its intermediate values are the validation macro-F1 of every epoch. Each trial's "
        "note holds its per-epoch train/valid loss, accuracy and F1; the user attributes hold "
        "its seed, repeat, parameter count and test F1. "
        f"`fishopt report {name}` writes tables with confidence intervals and significance tests.",
    ]
    if spec.get("tuned", {}).get("protocol", 1) >= 2:
        lines += [
            "",
            "**Tuned protocol.** Filter trials by the user attribute `phase`: `search` (scored "
            "on the selection half of the validation split; each optimizer's first one runs "
            "torch's defaults, `at_defaults`), `confirm` (an optimizer's best search setting "
            "re-run with seed `repeat`) and `defaults` (its defaults re-run with the same "
            "seeds). Confirm and defaults values are the reporting half's macro-F1, at the epoch "
            "the selection half chose.",
        ]
    return "\n".join(lines)


def trial_note(trial: FrozenTrial) -> str:
    h = trial.user_attrs.get("history") or []
    head = (
        f"### Trial {trial.number}: per-epoch curves\n\n"
        f"hidden `{'-'.join(map(str, trial.user_attrs.get('hidden', []))) or 'none'}`, "
        f"{trial.user_attrs.get('n_params', '?')} parameters, seed {trial.user_attrs.get('seed')}"
        f", test F1 {_num(trial.user_attrs.get('test_f1'))}\n\n"
        "| epoch | train loss | valid loss | train acc | valid acc | train F1 | valid F1 | s |\n"
        "|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    rows = "".join(
        f"| {r['epoch']} | {r['train_loss']:.4f} | {r['valid_loss']:.4f} | {r['train_acc']:.3f}"
        f" | {r['valid_acc']:.3f} | {r['train_f1']:.3f} | {r['valid_f1']:.3f}"
        f" | {r['seconds']:.2f} |\n"
        for r in h
    )
    return head + rows


def save_study_note(study: optuna.Study, identity: dict) -> None:
    """The study's note from what it was created from (``identity``: spec, data, split)."""
    fence.write_note(study, study_note(study.study_name, identity))


def save_trial_note(study: optuna.Study, trial: FrozenTrial) -> None:
    fence.write_note(fence.trial_ref(study, trial), trial_note(trial))


def _num(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "-"
