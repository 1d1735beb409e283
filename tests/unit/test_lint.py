"""The code stays lint-clean and formatted (ruff) and keeps its import contracts (import-linter),
with the project's settings in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import ROOT


def _ruff(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


def test_ruff_finds_nothing():
    result = _ruff("check", "--no-cache", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_services_and_shared_code_is_formatted():
    result = _ruff("format", "--check", "--no-cache", "shared", "services")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_import_contracts_hold():
    """Pure domain, services independent of one another, messages apart from the bus and the
    database (the contracts in pyproject.toml's [tool.importlinter])."""
    result = subprocess.run(
        [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
