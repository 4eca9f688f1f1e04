"""The test suite itself: without a PostgreSQL (or MariaDB) server, ``pytest`` says so in
one line per server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_without_a_server_the_summary_has_one_line_saying_how_to_run_the_postgresql_tests() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SQLAUDIT_")}
    env["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"  # no container either
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_json_null.py"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    skipped = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 2, run.stdout
    line, mariadb = sorted(skipped, key=lambda s: "MariaDB" in s)
    assert mariadb.startswith("SKIPPED [18] tests: MariaDB tests skipped, no server")
    assert "SQLAUDIT_TEST_MARIADB_URL=mysql+pymysql://" in mariadb
    assert line.startswith("SKIPPED [36] tests: PostgreSQL tests skipped, no server")
    assert "SQLAUDIT_TEST_POSTGRES_URL=postgresql+psycopg://" in line
    assert "pip install '.[test,testcontainers]' with Docker running" in line
    assert "18 passed, 54 skipped" in run.stdout
