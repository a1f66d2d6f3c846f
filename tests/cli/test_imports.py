"""Commands that do not train start without torch (README, "make test"): importing it costs
a second or more of CPU, paid by every `studies`, `show`, `report`, `doctor` and `dashboard`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = """
import sys
from typer.testing import CliRunner
from fishopt.cli import app
storage = ["--storage", sys.argv[1]]
for words in (["--help"], ["studies", *storage], ["doctor", *storage], ["study", "--help"]):
    result = CliRunner().invoke(app, words)
    assert result.exit_code == 0, (words, result.output)
print("torch" in sys.modules, "torch._dynamo" in sys.modules)
"""


def test_commands_that_do_not_train_never_import_torch(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, url], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"], out.stdout
