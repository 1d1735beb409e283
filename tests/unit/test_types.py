"""The code type-checks: mypy --strict with the pydantic plugin (settings in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys

from tests.support import ROOT


def test_mypy_finds_nothing():
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "shared", "services"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
