"""Optuna's private names live in ``fishopt/storage/`` only, and every one still exists.

If this fails after an Optuna upgrade, the message lists the names that are gone: adapt
``fishopt/storage/fence.py`` (and the code beside it) before widening Optuna's bound in
pyproject.toml.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import optuna
import pytest

import fishopt
from fishopt.storage import fence

PACKAGE = Path(fishopt.__file__).parent
OPTUNA_PRIVATE = {name.split(".")[-1] for _module, path in fence.PRIVATE_NAMES for name in [path]}


def test_every_private_optuna_name_fishopt_uses_exists(tmp_path: Path) -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'f.db'}")
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    instances = {
        "Study": study,
        "Trial": trial,
        "FrozenTrial": study.trials[0],
        "_CachedStorage": study._storage,
        "RDBStorage": storage,
    }
    missing = fence.missing_names(instances)
    assert not missing, f"optuna {optuna.__version__} lacks: {', '.join(missing)}"


def _private_uses(path: Path) -> list[str]:
    """Attribute names starting with one underscore, read off objects that are not ``self``,
    ``cls`` or ``super()`` (fishopt's own), and imports from Optuna's private modules."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("optuna"):
            if any(part.startswith("_") for part in node.module.split(".")) or any(
                a.name.startswith("_") for a in node.names
            ):
                found.append(f"{path.name}:{node.lineno} from {node.module}")
        elif isinstance(node, ast.Attribute) and node.attr in OPTUNA_PRIVATE:
            base = node.value
            if isinstance(base, ast.Name) and base.id in ("self", "cls"):
                continue
            if isinstance(base, ast.Call) and getattr(base.func, "id", "") == "super":
                continue
            found.append(f"{path.name}:{node.lineno} .{node.attr}")
    return found


def test_private_optuna_names_appear_only_under_fishopt_storage() -> None:
    outside = [
        use
        for path in sorted(PACKAGE.rglob("*.py"))
        if "storage" not in path.relative_to(PACKAGE).parts[:1]
        for use in _private_uses(path)
    ]
    assert outside == [], "private Optuna names outside fishopt/storage/: " + "; ".join(outside)


def test_the_fence_check_sees_a_name_that_is_gone(monkeypatch) -> None:
    """The check itself can fail: a name Optuna does not have is reported."""
    fake = (*fence.PRIVATE_NAMES, ("optuna.trial", "FrozenTrial._no_such_attribute"))
    monkeypatch.setattr(fence, "PRIVATE_NAMES", fake)
    assert "optuna.trial.FrozenTrial._no_such_attribute" in fence.missing_names()
    monkeypatch.setattr(fence, "PRIVATE_NAMES", (("optuna.nowhere", "x"),))
    assert fence.missing_names() == ["optuna.nowhere (module)"]


def test_notes_written_without_the_dashboard_package_are_the_dashboards_notes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The note module loaded from its file (what a worker uses, to spare it scikit-learn)
    writes notes that optuna-dashboard's own ``get_note`` reads back, version after version."""
    from optuna_dashboard import get_note

    monkeypatch.delitem(sys.modules, "optuna_dashboard._note", raising=False)
    alone = fence.dashboard_notes.__wrapped__()
    assert alone.__name__ == "fishopt.storage._dashboard_note"
    study = optuna.create_study()
    trial = study.ask()
    study.tell(trial, 1.0)
    alone.save_note(study, "first")
    alone.save_note(study, "**second** " + "x" * 5000)  # longer than one system attr holds
    ref = fence.trial_ref(study, study.trials[0])
    alone.save_note(ref, "trial")
    assert get_note(study) == "**second** " + "x" * 5000
    assert get_note(ref) == "trial"  # type: ignore[arg-type]
