"""The README's first two commands are the ones CI and new users run."""

import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]


def readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    return re.findall(r"```bash\n(.+?)\n```", text)


def test_readme_opens_with_train_and_test_commands():
    train, test = readme_commands()[:2]
    assert "pip install torch==2.13.0" in train and "llmtui --run cpu" in train
    assert "pip install torch==2.13.0" in test and "pytest" in test


def test_ci_runs_exactly_the_readme_test_command():
    test = readme_commands()[1]
    ci = (REPO / ".ci" / "run").read_text()
    assert test in ci.splitlines(), "the test command in .ci/run must be the README's, verbatim"
