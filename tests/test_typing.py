"""The package type-checks under ``mypy --strict`` (settings in pyproject.toml; mypy
comes with the ``test`` extra)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_mypy_strict_passes() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "sqlaudit"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, (
        f"mypy --strict sqlaudit failed (exit {result.returncode}):\n"
        f"{result.stdout}{result.stderr}"
    )
