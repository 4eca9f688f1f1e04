"""PACKAGING: the built wheel ships the SQL templates and works when installed.

These tests build sqlaudit's wheel with pip, look inside it, install it into a
fresh virtualenv (dependencies such as SQLAlchemy come from the package index)
and run ``examples/quickstart.py`` with that virtualenv's Python from an empty
folder, so nothing from the source tree can be imported by accident.
They need no database server and take roughly 15-30 seconds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = PROJECT_ROOT / "examples" / "quickstart.py"


def _run(args: list[str], cwd: Path, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", str(PROJECT_ROOT), "--no-deps", "-q", "-w", str(out)],
         cwd=out)
    (built,) = out.glob("sqlaudit-*.whl")
    return built


@pytest.fixture(scope="module")
def installed_python(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=venv.parent)
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "-q", str(wheel)], cwd=venv.parent, timeout=300)
    return python


def test_wheel_ships_the_sql_templates_and_the_typing_marker(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {
        "sqlaudit/sql_templates/postgresql/function.sql",
        "sqlaudit/sql_templates/sqlite/triggers.sql",
        "sqlaudit/py.typed",
    } <= names


def test_installed_wheel_is_imported_from_the_virtualenv(
    installed_python: Path, tmp_path: Path
) -> None:
    result = _run([str(installed_python), "-c", "import sqlaudit; print(sqlaudit.__file__)"],
                  cwd=tmp_path)
    location = Path(result.stdout.strip())
    assert location.is_relative_to(installed_python.parent.parent)
    assert not location.is_relative_to(PROJECT_ROOT)


def test_quickstart_runs_on_the_installed_wheel(installed_python: Path, tmp_path: Path) -> None:
    result = _run([str(installed_python), str(QUICKSTART)], cwd=tmp_path)
    assert "TO Jane Smith (OLD: Jane Doe) BY USER ID 1" in result.stdout
