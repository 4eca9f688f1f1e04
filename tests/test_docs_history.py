"""docs/history.md runs as written: its Python blocks in order on SQLite, and its raw
SQL block on PostgreSQL."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from sqlaudit.retrieval import get_changes

DOC = Path(__file__).resolve().parent.parent / "docs" / "history.md"


def blocks(language: str) -> list[str]:
    return [re.sub(r"^  ", "", b, flags=re.M)
            for b in re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), re.S)]


def test_every_python_block_runs_in_order(tmp_path: Path) -> None:
    """The blocks, one after the other, as one script in a fresh interpreter; the
    ``# expected`` comments after print() calls are checked against its output."""
    code = blocks("python")
    assert len(code) >= 8
    script = tmp_path / "history_tour.py"
    script.write_text("\n\n".join(code))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    expected = [line[2:] for block in code for line in block.splitlines()
                if line.startswith("# ") and not line.startswith("# a ")
                and block.splitlines()[block.splitlines().index(line) - 1].startswith("print(")]
    assert result.stdout.splitlines() == expected


@pytest.mark.parametrize("dialect", ["postgresql"], indirect=True)
def test_the_raw_sql_block_sets_user_reason_and_context(engine, Base) -> None:
    from test_history import shop_models

    shop_models(Base)
    Base.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO products (id, name, price) VALUES (1, 'pen', 1)"))
    (sql,) = blocks("sql")
    with engine.connect() as conn:
        for statement in filter(None, (s.strip() for s in sql.split(";"))):
            conn.exec_driver_sql(statement)
    with Session(engine) as s:
        record = get_changes(s, operations="update")[0]
    assert (record.changed_by, record.reason, record.context) == ("42", "manual fix", {"ticket": "T-9"})
